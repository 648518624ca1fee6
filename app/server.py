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
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import gevent
from flask import Flask, Response
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.sock import ssl_context as gunicorn_ssl_context
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
        # greenlet waiting for a head -> (has it answered a request before, since when)
        self._idle: dict[Any, tuple[bool, float]] = {}
        self._keepalive_s = self.cfg.keepalive  # read per request: gunicorn's lookup is dear
        self._environs: dict[Any, dict[str, Any]] = {}  # listener -> its requests' environ
        self._tls: ssl.SSLContext | None = None

    def run(self) -> None:
        # gevent's server gets a context that leaves accepted sockets plain
        # (_PlainUntilHandle); `handle` wraps them with the real one.
        self._tls = gunicorn_ssl_context(self.cfg).context if self.cfg.is_ssl else None
        super().run()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        # Every read and write on the client's socket gives up after STREAM_STALL_S (the
        # gevent worker would block for ever): a client that stops reading or sending
        # holds its greenlet no longer. Each request's head (and a TLS handshake) is bounded
        # by the keep-alive timeout (_IdleBound), its body by BODY_TIMEOUT_S (app.routes).
        client.settimeout(self.app.settings.stream_stall_s)
        if len(self._open) >= self.open_limit and not self._shed_an_idle_connection():
            metrics.record_shed("full")
            self._refuse(client)
            return
        me = gevent.getcurrent()
        self._open[me] = client
        idle = _IdleBound(self._idle, self._keepalive_s)
        try:
            if self._tls is not None:
                client = self._open[me] = self._wrapped(client)
                if not self._shook_hands(client, idle()):
                    return
            if listener not in self._environs:
                self._environs[listener] = http1.environ_base(
                    listener.getsockname()[:2],
                    "https" if self._tls is not None else "http",
                    self.cfg.workers > 1,
                )
            http1.Connection(
                client,
                addr,
                self.wsgi,
                self._environs[listener],
                idle,
                self._keep_serving,
            ).serve()
        except OSError:  # a client gone before its TLS handshake began
            return
        finally:
            del self._open[me]
            self._idle.pop(me, None)
            util.close(client)

    def _refuse(self, client: Any) -> None:
        """The 503 of a full worker, within the keep-alive timeout (a TLS client shakes hands
        first); a client gone already needs no answer."""
        try:
            with contextlib.suppress(OSError):
                if self._tls is not None:
                    client = self._wrapped(client)
                    if not self._shook_hands(client, gevent.Timeout(self._keepalive_s, False)):
                        return
                client.settimeout(self._keepalive_s)
                http1.write_error(client, 503, "Service Unavailable", "every connection is busy")
        finally:
            util.close(client)  # the TLS socket once wrapped: it holds the connection

    def _wrapped(self, client: socket.socket) -> ssl.SSLSocket:
        """The client's socket under TLS, its handshake not made yet (`_shook_hands`)."""
        assert self._tls is not None
        return self._tls.wrap_socket(client, server_side=True, do_handshake_on_connect=False)

    @staticmethod
    def _shook_hands(client: ssl.SSLSocket, bound: AbstractContextManager[Any]) -> bool:
        """A TLS handshake within `bound`; False when it failed (plain HTTP on the TLS port,
        a stall, a reset)."""
        done = False
        with contextlib.suppress(OSError), bound:
            client.do_handshake()
            done = True
        return done

    def _keep_serving(self) -> bool:
        """Whether a connection may take another request after this answer: not once the
        worker stops, nor while draining (a kept-alive client reconnects, and the Service
        sends the new connection to a pod that is not going away)."""
        return self.alive and not LIFECYCLE.draining

    def _shed_an_idle_connection(self) -> bool:
        """Close an idle connection: one that never had a request answered before one kept
        alive (a flood of new connections cannot push out a client busy on its own), then the
        one idle the longest. Its parser reads the end, its greenlet ends."""
        if not self._idle:
            return False
        greenlet = min(self._idle, key=self._idle.__getitem__)
        del self._idle[greenlet]
        with contextlib.suppress(OSError):
            self._open[greenlet].shutdown(socket.SHUT_RDWR)
        metrics.record_shed("idle")
        return True


class _IdleBound:
    """One connection's waits for a request's head (and for its TLS handshake), each bounded
    by the keep-alive timeout and listed as idle meanwhile (`_idle`: greenlet -> whether it
    has answered a request before, since when), so that it may be shed. A class, as
    contextlib's generator machinery is dear on a path every request takes. Each wait gets
    a new timer: one restarted in gevent's libev loop resumes what was left of it."""

    def __init__(self, idle: dict[Any, tuple[bool, float]], seconds: float) -> None:
        self._idle = idle
        self._seconds = seconds
        self._me = gevent.getcurrent()
        self._kept_alive = False
        self._timer: gevent.Timeout | None = None

    def __call__(self, kept_alive: bool = False) -> _IdleBound:
        self._kept_alive = kept_alive
        return self

    def __enter__(self) -> None:
        self._idle[self._me] = (self._kept_alive, time.monotonic())
        self._timer = gevent.Timeout.start_new(self._seconds)

    def __exit__(self, kind: type | None, error: BaseException | None, trace: Any) -> bool:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        self._idle.pop(self._me, None)
        return error is not None and error is timer  # the wait ended by the bound


class _PlainUntilHandle:
    """The TLS context as gevent's StreamServer holds it: accepted sockets stay plain, and
    `GatewayWorker.handle` wraps them. gevent would shake hands before `handle`, with no time
    bound, outside the connection count, and with a traceback for every failed handshake."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock: socket.socket, **_options: Any) -> socket.socket:
        return sock


def _tls_context(_config: Any, default_context: Callable[[], ssl.SSLContext]) -> Any:
    """gunicorn's `ssl_context` hook: its own context (certificate, key), for `handle`."""
    return _PlainUntilHandle(default_context())


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
            "ssl_context": _tls_context,
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


def serve(server: GatewayServer) -> None:
    """Run the server; its master removes the metrics directory when it ends."""
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    master_pid = os.getpid()
    try:
        server.run()
    finally:
        if os.getpid() == master_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
