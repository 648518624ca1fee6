"""Floors for the same-run comparison: what an HTTP server and Flask cost with no database.

Each floor answers `POST /query` with the gateway's answer to `select 1`, after reading the
body, so its CPU per request is what the server (and Flask) alone take of the gateway's.
`gunicorn` runs the gateway's worker class (gevent) and gunicorn's gevent_pywsgi worker
(gevent's own HTTP parsing), `granian` a Rust HTTP server with the same app, each with one
worker.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from flask import Flask, Response, request

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
