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
- gunicorn's own answers (a request it cannot parse, headers over its limits) are the
  contract's JSON error bodies with an `X-Request-ID`, like every other answer.
- An answer's head leaves with its first body bytes, in one send (`GatewayResponse`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gevent
from flask import Flask, Response
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.http.errors import ParseException
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker
from prometheus_client import multiprocess

from app import create_app, metrics, operations
from app.encode import dumps
from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.jsonlog import logging_config
from app.lifecycle import LIFECYCLE
from app.responses import error_document, error_response
from app.settings import Settings

# Accepted beyond WORKER_CONNECTIONS, only to be shed: an accept that stopped at the limit
# would leave new clients in the kernel's backlog behind whatever holds the slots.
SHED_MARGIN = 64
# A body up to this size is copied behind its head to leave in one send; a larger one is
# sent apart, as a copy of it would cost its size in memory again.
JOIN_BODY_BYTES = 64 * 1024


def write_json_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """gunicorn's `util.write_error`, answering the contract's JSON instead of HTML."""
    text = f"{reason}: {message}" if message else reason
    body = dumps(error_document(ApiError(status, text)))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
    )
    if status == 503:
        head += f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
    util.write_nonblock(sock, head.encode("latin-1") + b"\r\n" + body)


util.write_error = write_json_error


class GatewayResponse(wsgi.Response):
    """gunicorn's HTTP/1 response, its head held until the first body bytes and sent with
    them: gunicorn sends the two apart, a syscall and a TCP segment more per answer."""

    _head = b""

    def send_headers(self) -> None:
        """As gunicorn's, but the head is kept for `_emit_body` or `close`."""
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._head = util.to_bytestring("".join(lines) + "\r\n", "latin-1")
        self.headers_sent = True

    def _flush_head(self) -> None:
        head, self._head = self._head, b""
        if head:
            util.write(self.sock, head)

    def _emit_body(self, data: bytes) -> None:
        if self._head and not self.chunked and len(data) <= JOIN_BODY_BYTES:
            data, self._head = self._head + data, b""
        self._flush_head()
        # sendall: gevent bounds it as a whole by the socket's timeout (STREAM_STALL_S)
        util.write(self.sock, data, self.chunked)

    def close(self) -> None:
        """A response without body bytes (a HEAD, an empty body) still sends its head."""
        self.send_headers()
        self._flush_head()
        super().close()


wsgi.Response = GatewayResponse  # what gunicorn's `wsgi.create` makes for each request


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


class GatewayLogger(Logger):
    """gunicorn's logger without its access log: the app writes one JSON line per request
    itself, and gunicorn would otherwise build its (discarded) access record every time."""

    def access(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with the gateway's limits on client connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_limit = self.worker_connections
        self.worker_connections = self.open_limit + SHED_MARGIN  # gevent's accept pool
        self._open: dict[Any, socket.socket] = {}  # greenlet -> its client
        self._idle: dict[Any, float] = {}  # greenlet waiting for headers -> since when

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if len(self._open) >= self.open_limit and not self._shed_an_idle_connection():
            metrics.record_shed("full")
            write_json_error(client, 503, "Service Unavailable", "every connection is busy")
            util.close(client)
            return
        me = gevent.getcurrent()
        self._open[me] = client
        # Every read and write on the client's socket gives up after STREAM_STALL_S (the
        # gevent worker would block for ever): a client that stops reading or sending
        # holds its greenlet no longer. The request headers are bounded by the keep-alive
        # timeout around gunicorn's parser, the body by BODY_TIMEOUT_S (app.routes).
        client.settimeout(self.app.settings.stream_stall_s)
        try:
            AsyncWorker.handle(self, listener, client, addr)
        finally:
            del self._open[me]
            self._idle.pop(me, None)

    @contextlib.contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """gunicorn waits for each request's headers in this: the connection is idle."""
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

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        if LIFECYCLE.draining:
            # Answer, then close: a kept-alive client reconnects, and the Service sends the
            # new connection to a pod that is not going away.
            req.must_close = True
        super().handle_request(listener_name, req, sock, addr)


def _malformed_body(error: ParseException) -> Response:
    """A body gunicorn's reader cannot parse (a malformed chunk) is the client's error: 400,
    not the 500 of an unexpected exception."""
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
            "sendfile": False,  # it would send a held head after the file (GatewayResponse)
            "logconfig_dict": logging_config(settings.log_level),
            "logger_class": GatewayLogger,
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
        app.register_error_handler(ParseException, _malformed_body)
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
