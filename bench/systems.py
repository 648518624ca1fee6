"""The HTTP systems under test: the gateway as production runs it, and postgres-meta.

Both listen on 127.0.0.1 only. postgres-meta is installed from npm (pinned) into a
cache directory on first use; a trivial node responder gives wrk's own ceiling.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from harness.local.postgres import free_port
from harness.local.serve import start_gateway, stop_gateway, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
PGMETA_PACKAGE = "@supabase/postgres-meta"
PGMETA_VERSION = "0.99.0"
CACHE = Path(os.environ.get("BENCH_CACHE", ROOT / ".cache" / "bench"))
START_TIMEOUT_S = 60

# The gateway's production settings for the benchmark (also its defaults once tuned).
GATEWAY_ENV: dict[str, str] = {}

STATIC_RESPONDER = """
const http = require('http');
const body = Buffer.from('{"result":[{"?column?":1}]}');
http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': body.length});
    res.end(body);
  });
}).listen(Number(process.argv[1]), '127.0.0.1');
"""


class Service:
    """A server process on a loopback port; `url` is its base URL."""

    def __init__(self, name: str, process: subprocess.Popen, port: int) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        stop_gateway(self.process, timeout_s=30)


def wait_post(
    url: str,
    body: bytes,
    process: subprocess.Popen,
    timeout_s: float,
    content_type: str = "application/json",
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with status {process.returncode}")
        request = Request(url, body, {"Content-Type": content_type})  # noqa: S310
        try:
            with urlopen(request, timeout=2):  # noqa: S310 - a loopback URL we built
                return
        except (URLError, HTTPError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def start_gateway_service(dsn: str, log: IO, env: dict[str, str]) -> Service:
    port, ops_port = free_port(), free_port()
    process = start_gateway(dsn, "127.0.0.1", (port, ops_port), {**GATEWAY_ENV, **env}, log)
    service = Service("gateway", process, port)
    wait_healthy(f"http://127.0.0.1:{ops_port}/healthz", process, START_TIMEOUT_S)
    wait_post(service.url + "/query", b'{"query":"select 1"}', process, START_TIMEOUT_S)
    return service


def install_pgmeta() -> Path:
    """node_modules/@supabase/postgres-meta under the cache, installed once per version."""
    prefix = CACHE / f"postgres-meta-{PGMETA_VERSION}"
    server = prefix / "node_modules" / PGMETA_PACKAGE / "dist" / "server" / "server.js"
    if server.exists():
        return server
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("bench: npm is needed to install postgres-meta (apt-get install npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing {PGMETA_PACKAGE}@{PGMETA_VERSION} into {prefix}", flush=True)
    subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--prefix",
            str(prefix),
            f"{PGMETA_PACKAGE}@{PGMETA_VERSION}",
        ],
        check=True,
    )
    return server


def free_port_and_next() -> int:
    """A free loopback port whose next one is free too: postgres-meta listens on both (its
    admin app on PG_META_PORT + 1) and exits when either is taken."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def start_pgmeta(dsn: str, log: IO) -> Service:
    server = install_pgmeta()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench: node is needed to run postgres-meta (apt-get install nodejs)")
    port = free_port_and_next()
    env = {
        **os.environ,
        "PG_META_DB_URL": dsn,
        "PG_META_HOST": "127.0.0.1",
        "PG_META_PORT": str(port),
        "NODE_ENV": "production",
    }
    env.pop("PG_META_DB_HOST", None)
    process = subprocess.Popen(
        [node, str(server)], env=env, stdout=log, stderr=log, start_new_session=True
    )
    service = Service(f"postgres-meta {PGMETA_VERSION}", process, port)
    wait_post(service.url + "/query", json.dumps({"query": "select 1"}).encode(), process, 60)
    return service


def start_static_responder(log: IO) -> Service:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench: node is needed for the static responder")
    port = free_port()
    process = subprocess.Popen(
        [node, "-e", STATIC_RESPONDER, str(port)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    service = Service("static responder", process, port)
    wait_post(service.url + "/", b"{}", process, 30)
    return service


def find_pgweb() -> Path | None:
    """pgweb's binary: $PGWEB, else `pgweb` on PATH; None when neither exists."""
    named = os.environ.get("PGWEB")
    if named:
        if not Path(named).is_file():
            raise SystemExit(f"bench: PGWEB={named} is not a file")
        return Path(named)
    found = shutil.which("pgweb")
    return Path(found) if found else None


def start_pgweb(binary: Path, dsn: str, log: IO) -> Service:
    """pgweb with one database connection string, no sessions, on loopback."""
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "--url", dsn, "--bind", "127.0.0.1", "--listen", str(port), "--skip-open"],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    service = Service("pgweb", process, port)
    form = "application/x-www-form-urlencoded"
    wait_post(service.url + "/api/query", b"query=select+1", process, START_TIMEOUT_S, form)
    return service
