"""The production server: gunicorn with gevent workers, a draining SIGTERM, a listener of its
own for the probes, and client connections bounded per worker.

Each worker serves its connections from greenlets in one thread; psycopg2 waits
cooperatively (app.wait). Against threads this removes the hand-offs between threads and
the GIL contention that set the latency tail (see docs/benchmarks.md, "Benchmarks").

- Probes and metrics: the master serves them on OPS_PORT (app.operations), apart from every
  client connection.
- Connections: a worker holds at most WORKER_CONNECTIONS. When one more arrives, the
  connection idle the longest (waiting for a request's headers: kept alive since its last
  answer, or never sent one) is closed to make room; when none is idle, the new one is
  answered 503 and closed. Either is counted in `gateway_connections_shed_total`. A request
  in progress is never cut, and a client busy on its kept-alive connection keeps it.
- Drain: on SIGTERM gunicorn would close its listening socket at once. The gateway first
  turns `/readyz` to 503 and lets in-flight requests finish, still answering (each answer
  then closes its connection), and only then lets gunicorn stop its workers gracefully.
- HTTP/1.1 itself is app.http1's (httptools' parser, not gunicorn's): its own answers (a
  request it cannot parse, a head over its limits) are the contract's JSON error bodies with
  an `X-Request-ID`, like every other answer, and an answer's head leaves with its first
  body bytes, in one send.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
from flask import Flask, Response
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import multiprocess

from app import create_app, http1, metrics, operations
from app.errors import ApiError
from app.jsonlog import logging_config
from app.lifecycle import LIFECYCLE
from app.responses import error_response
from app.settings import Settings

# Accepted beyond WORKER_CONNECTIONS, only to be shed: an accept that stopped at the limit
# would leave new clients in the kernel's backlog behind whatever holds the slots.
SHED_MARGIN = 64


class DrainingArbiter(Arbiter):
    def start(self) -> None:
        super().start()
        settings = self.app.settings
        operations.start(settings, LIFECYCLE, lambda: len(self.WORKERS))

    def handle_term(self) -> None:
        self.log.info("SIGTERM: draining, /readyz now answers 503")
        LIFECYCLE.start_draining()
        if not LIFECYCLE.wait_idle(self.cfg.graceful_timeout):
            self.log.warning("grace period over with requests still in flight")
        raise StopIteration


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with the gateway's limits on client connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_limit = self.worker_connections
        self.worker_connections = self.open_limit + SHED_MARGIN  # gevent's accept pool
        self._open: dict[Any, socket.socket] = {}  # greenlet -> its client
        self._idle: dict[Any, float] = {}  # greenlet waiting for headers -> since when
        self._environs: dict[Any, dict[str, Any]] = {}  # listener -> its requests' environ

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if len(self._open) >= self.open_limit and not self._shed_an_idle_connection():
            metrics.record_shed("full")
            http1.write_error(client, 503, "Service Unavailable", "every connection is busy")
            util.close(client)
            return
        me = gevent.getcurrent()
        self._open[me] = client
        # Every read and write on the client's socket gives up after STREAM_STALL_S (the
        # gevent worker would block for ever): a client that stops reading or sending
        # holds its greenlet no longer. Each request's head is bounded by the keep-alive
        # timeout (timeout_ctx), its body by BODY_TIMEOUT_S (app.routes).
        client.settimeout(self.app.settings.stream_stall_s)
        try:
            if listener not in self._environs:
                self._environs[listener] = http1.environ_base(
                    listener.getsockname()[:2],
                    "https" if self.cfg.is_ssl else "http",
                    self.cfg.workers > 1,
                )
            http1.Connection(
                client,
                addr,
                self.wsgi,
                self._environs[listener],
                self.timeout_ctx,
                self._keep_serving,
            ).serve()
        finally:
            del self._open[me]
            self._idle.pop(me, None)
            util.close(client)

    def _keep_serving(self) -> bool:
        """Whether a connection may take another request after this answer: not once the
        worker stops, nor while draining (a kept-alive client reconnects, and the Service
        sends the new connection to a pod that is not going away)."""
        return self.alive and not LIFECYCLE.draining

    @contextlib.contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """Each request's head is waited for in this: the connection is idle."""
        me = gevent.getcurrent()
        self._idle[me] = time.monotonic()
        try:
            with gevent.Timeout(self.cfg.keepalive, False):
                yield
        finally:
            self._idle.pop(me, None)

    def _shed_an_idle_connection(self) -> bool:
        """Close the connection idle the longest: its parser reads the end, its greenlet ends."""
        if not self._idle:
            return False
        greenlet = min(self._idle, key=self._idle.__getitem__)
        del self._idle[greenlet]
        with contextlib.suppress(OSError):
            self._open[greenlet].shutdown(socket.SHUT_RDWR)
        metrics.record_shed("idle")
        return True


def _malformed_body(error: http1.MalformedBody) -> Response:
    """A body whose framing is broken (a malformed chunk) is the client's error: 400, not the
    500 of an unexpected exception."""
    return error_response(ApiError(400, f"the request body is malformed: {error}"))


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
            "child_exit": _child_exit,
            "proc_name": "pg-gateway",
            "certfile": settings.tls_cert_file,
            "keyfile": settings.tls_key_file,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Runs in each worker after gevent has patched it, before any connection exists.
        app = create_app(self.settings)
        app.register_error_handler(http1.MalformedBody, _malformed_body)
        return app

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
