"""The production server: gunicorn with gevent workers and a draining SIGTERM.

Each worker serves its connections from greenlets in one thread; psycopg2 waits
cooperatively (`app.green`). Against threads this removes the hand-offs between threads
and the GIL contention that set the latency tail (see the README's Benchmarks).

On SIGTERM gunicorn would close its listening socket at once. The gateway first turns
`/readyz` to 503 and lets in-flight requests finish, still answering, and only then
lets gunicorn stop its workers gracefully.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import multiprocess

from app import create_app
from app.jsonlog import logging_config
from app.lifecycle import LIFECYCLE
from app.settings import Settings


class DrainingArbiter(Arbiter):
    def handle_term(self) -> None:
        self.log.info("SIGTERM: draining, /readyz now answers 503")
        LIFECYCLE.start_draining()
        if not LIFECYCLE.wait_idle(self.cfg.graceful_timeout):
            self.log.warning("grace period over with requests still in flight")
        raise StopIteration


class GatewayLogger(Logger):
    """gunicorn's logger without its access log: the app writes one JSON line per request
    itself, and gunicorn would otherwise build its (discarded) access record every time."""

    def access(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with the gateway's limits on client connections."""

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        # Every read and write on the client's socket gives up after STREAM_STALL_S (the
        # gevent worker would block for ever): a client that stops reading or sending
        # holds its greenlet no longer. The request headers are bounded by the keep-alive
        # timeout around gunicorn's parser, the body by BODY_TIMEOUT_S (app.routes).
        client.settimeout(self.app.settings.stream_stall_s)
        AsyncWorker.handle(self, listener, client, addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        if LIFECYCLE.draining:
            # Answer, then close: a kept-alive client reconnects, and the Service sends the
            # new connection to a pod that is not going away.
            req.must_close = True
        super().handle_request(listener_name, req, sock, addr)


def _child_exit(_server: Arbiter, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
    LIFECYCLE.forget(worker.pid)


class GatewayServer(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        options = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "worker_class": GatewayWorker,
            "worker_connections": settings.worker_connections,
            "graceful_timeout": settings.graceful_timeout_s,
            "keepalive": 5,
            "accesslog": None,
            "control_socket_disable": True,
            "logconfig_dict": logging_config(settings.log_level),
            "logger_class": GatewayLogger,
            "child_exit": _child_exit,
            "proc_name": "pg-gateway",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Runs in each worker after gevent has patched it, before any connection exists.
        return create_app(self.settings)

    def run(self) -> None:
        DrainingArbiter(self).run()


def serve(settings: Settings) -> None:
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    master_pid = os.getpid()
    try:
        GatewayServer(settings).run()
    finally:
        if os.getpid() == master_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
