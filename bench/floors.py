"""Floors for the same-run comparison: what an HTTP server and Flask cost with no database.

Each floor answers `POST /query` with the gateway's answer to `select 1`, after reading the
body, so its CPU per request is what the server (and Flask) alone take of the gateway's.
`gateway server` is the gateway's own (`app.server`: gunicorn's processes, its gevent
worker class, HTTP/1.1 by app.http1) around these apps instead of the gateway's: what a
request costs the gateway before its app does anything. `gunicorn` runs gunicorn's gevent
worker and its gevent_pywsgi worker (gevent's own HTTP parsing), `granian` a Rust HTTP
server with the same app, each with one worker.

    python -m bench.floors --port PORT bench.floors:bare   # the gateway server's floor
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from flask import Flask, Response, request

from app import metrics
from app.server import GatewayServer, serve
from app.settings import load_settings
from bench.systems import ROOT, START_TIMEOUT_S, Service, wait_post
from harness.local.postgres import free_port

FLOOR = "floor: "  # how every floor's name begins
ANSWER = b'{"result":[{"?column?":1}],"rowcount":1,"command":"SELECT"}'


def bare(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """A WSGI app and nothing else."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [ANSWER]


flask_app = Flask(__name__)


@flask_app.post("/query")
def query() -> Response:
    request.get_data()
    return Response(ANSWER, mimetype="application/json")


# name -> (the tool in this environment, its options for one worker on a port)
SERVERS: dict[str, tuple[str, Callable[[int], list[str]]]] = {
    "gateway server": ("python", lambda port: ["-m", "bench.floors", "--port", str(port)]),
    "gunicorn gevent": (
        "gunicorn",
        lambda port: ["-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}"],
    ),
    # gunicorn's other gevent worker: gevent's own WSGI server (pywsgi) parses the requests.
    "gunicorn gevent_pywsgi": (
        "gunicorn",
        lambda port: ["-k", "gevent_pywsgi", "-w", "1", "-b", f"127.0.0.1:{port}"],
    ),
    "granian": (
        "granian",
        lambda port: [
            *("--interface", "wsgi", "--workers", "1", "--blocking-threads", "1", "--no-ws"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
    ),
}
APPS = {"bare WSGI": "bench.floors:bare", "Flask": "bench.floors:flask_app"}


def starters(log: IO) -> list[tuple[str, Callable[[], Service]]]:
    """(name, start) of every floor whose server this environment has."""
    found = []
    for server, (tool, options) in SERVERS.items():
        executable = shutil.which(tool, path=str(Path(sys.executable).parent))
        if executable is None:
            continue
        for app_name, app in APPS.items():
            name = f"{FLOOR}{server}, {app_name}"
            found.append((name, functools.partial(_start, name, executable, options, app, log)))
    return found


def _start(
    name: str, executable: str, options: Callable[[int], list[str]], app: str, log: IO
) -> Service:
    port = free_port()
    process = subprocess.Popen(
        [executable, *options(port), app],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    service = Service(name, process, port)
    wait_post(service.url + "/query", b'{"query":"select 1"}', process, START_TIMEOUT_S)
    return service


class _FloorServer(GatewayServer):
    """The gateway's server, its workers serving a floor app instead of `create_app()`'s."""

    def __init__(self, port: int, app: Callable) -> None:
        self._app = app
        # Nothing connects to it: the operations listener's /readyz is never asked here.
        env = {"DATABASE_URL": "postgresql://floor@127.0.0.1:1/floor", "HOST": "127.0.0.1"}
        super().__init__(
            load_settings({**env, "PORT": str(port), "OPS_PORT": str(free_port()), "WORKERS": "1"})
        )

    def load(self) -> Callable:
        return self._app


def main() -> int:
    metrics.run_with_multiprocess_files("bench.floors")  # as `python -m app` runs
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("app", choices=sorted(APPS.values()))
    options = parser.parse_args()
    serve(_FloorServer(options.port, globals()[options.app.partition(":")[2]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
