"""Health, readiness and metrics on a listener of their own (OPS_PORT), in gunicorn's master.

On the data port they shared the workers' client connections: a few hundred idle sockets
without any token made the kubelet's probes time out, and it restarted healthy pods. The
master serves no client, so no load on the data port reaches this listener; it is not in the
Service, and a NetworkPolicy admits only the kubelet (node-local) and Prometheus to it.
- GET /healthz: 200 while the process is alive; touches nothing.
- GET /readyz: 200 when the server is not draining, has a live worker, and a new connection
  answers `SELECT 1` within READY_TIMEOUT_S.
- GET /metrics: every worker's metrics (prometheus_client's multiprocess files).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from app import errorpages, wait
from app.db import Database
from app.lifecycle import Lifecycle
from app.metrics import render
from app.responses import status_response
from app.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 1.0
CONNECTION_TIMEOUT_S = 5  # a probe's connection that sends nothing is dropped after this


def create_ops_app(
    settings: Settings, lifecycle: Lifecycle, live_workers: Callable[[], int]
) -> Flask:
    wait.install()
    ops = Flask(__name__)
    database = Database(settings)
    errorpages.install(ops)

    @ops.get("/healthz", provide_automatic_options=False)
    def healthz() -> Response:
        return status_response("ok")

    @ops.get("/readyz", provide_automatic_options=False)
    def readyz() -> Response:
        if lifecycle.draining:
            return status_response("draining", 503)
        if not live_workers():
            return status_response("no worker is running", 503)
        if not database.probe(READY_TIMEOUT_S):
            return status_response("database unavailable", 503)
        return status_response("ready")

    @ops.get("/metrics", provide_automatic_options=False)
    def metrics() -> Response:
        text, content_type = render()
        return Response(text, content_type=content_type)

    return ops


class _QuietHandler(WSGIRequestHandler):
    """No access line per probe; a connection that sends nothing is dropped."""

    timeout = CONNECTION_TIMEOUT_S

    def log_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def start(settings: Settings, lifecycle: Lifecycle, live_workers: Callable[[], int]) -> None:
    """Serve the operations endpoints from a thread of this (the master) process."""
    server: BaseWSGIServer = make_server(
        settings.host,
        settings.ops_port,
        create_ops_app(settings, lifecycle, live_workers),
        threaded=True,
        request_handler=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="ops", daemon=True).start()
    log.info("operations endpoints on %s:%s", settings.host, settings.ops_port)
