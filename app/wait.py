"""Waiting on PostgreSQL: cooperative under gevent, and bounded by the request's limits.

Every libpq wait of the process goes through `wait_for_database`, psycopg2's wait callback
(libpq then runs asynchronously). Under gunicorn's gevent worker a wait yields to the
other greenlets; elsewhere it is a plain `select`. The callback also owns the limits that
SQL cannot move:
- while connecting, the connection's `connect_timeout` (libpq ignores it in this mode), or
  the deadline of the request that opens it (`connecting_until`) when that comes first;
- while a request runs, its deadline (`timeout_ms`, for the whole request): when it passes,
  the gateway sends libpq's cancel request, without blocking (app.libpq), and if the server
  has not given up after CANCEL_GRACE_S (PostgreSQL's lexer, or PL/pgSQL that catches the
  cancel, or a stalled server) the wait raises `DeadlineExceeded`;
- while a result arrives, what libpq may hold for it (`read_limit`): libpq reads a result
  whole before psycopg2 sees a row, so after each poll the bytes it holds are checked and
  the wait raises `ResultTooLarge` once they pass the limit.
On either exception psycopg2 closes the connection; app.sessions then ends its backend.
Under gevent a pooled connection keeps its own two watchers on its socket: a new watcher
for every wait, as gevent's `wait_read` makes, had libev register the socket with epoll
again each time (an fcntl and a failing epoll_ctl per wait).
"""

from __future__ import annotations

import contextvars
import select
import time
from typing import Any

import psycopg2
import psycopg2.extensions as ext
from gevent import get_hub, monkey
from gevent.exceptions import ConcurrentObjectUseError
from gevent.hub import Waiter
from gevent.socket import wait_read, wait_write

from app import libpq

CANCEL_GRACE_S = 2.0
# A connection in these states has its socket for good (psycopg2's SETUP, CONNECTING and
# DATESTYLE come before).
_CONNECTED = (ext.STATUS_READY, ext.STATUS_BEGIN, ext.STATUS_PREPARED)
# The deadline of the request this greenlet (or thread) serves while it opens a connection.
_REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_deadline", default=None
)


class DeadlineExceeded(Exception):
    """The request's deadline passed and the server did not stop when cancelled."""


class ResultTooLarge(Exception):
    """libpq would hold more of a result than the request's byte limit allows."""


class GatewayConnection(ext.connection):
    """A connection that carries the limits of the request using it."""

    deadline: float | None = None  # time.monotonic() by which the request must be done
    read_limit: int | None = None  # bytes libpq may hold for one statement's result
    cancelled = False  # the cancel request was sent: never reuse this connection
    watchers: tuple[Any, Any] | None = None  # gevent's (read, write) watchers on its socket

    def start_deadline(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s

    def stop_deadline(self) -> None:
        self.deadline = None
        self.read_limit = None


class connecting_until:
    """Connections opened inside give up at `deadline` (time.monotonic()) too: a request's
    own, so a server that never answers costs it no more than its timeout_ms. A class, not
    a generator context manager: every request enters it, and contextlib's machinery took
    2.5 us of it against 0.6 (timeit)."""

    __slots__ = ("_deadline", "_token")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __enter__(self) -> None:
        self._token = _REQUEST_DEADLINE.set(self._deadline)

    def __exit__(self, *_exc: object) -> None:
        _REQUEST_DEADLINE.reset(self._token)


def _connect_deadline(connection: ext.connection) -> float | None:
    """While a connection is being set up, the monotonic time it must be up by: its
    connect_timeout, or the deadline of the request opening it if that comes first."""
    if connection.status != ext.STATUS_SETUP:
        return None
    timeout = ext.parse_dsn(connection.dsn).get("connect_timeout", "")
    ends = [_REQUEST_DEADLINE.get()]
    if timeout.isdigit() and int(timeout) > 0:
        ends.append(time.monotonic() + int(timeout))
    return min((end for end in ends if end is not None), default=None)


def ready(fileno: int, writing: bool, timeout_s: float | None) -> bool:
    """Wait until the socket is ready; False if the timeout came first."""
    if monkey.is_module_patched("socket"):
        wait = wait_write if writing else wait_read
        try:
            wait(fileno, timeout=timeout_s, timeout_exc=TimeoutError)
        except TimeoutError:
            return False
        return True
    waiting = ([], [fileno], []) if writing else ([fileno], [], [])
    return bool(any(select.select(*waiting, timeout_s)))


def _ready_connection(connection: ext.connection, writing: bool, timeout_s: float | None) -> bool:
    """`ready`, on the connection's own watchers once it is connected. Not before: while it
    connects libpq may move to another socket (the next host, one that refused it under
    target_session_attrs), and watchers kept on the first would watch a closed number."""
    if (
        not isinstance(connection, GatewayConnection)
        or connection.status not in _CONNECTED
        or not monkey.is_module_patched("socket")
    ):
        return ready(connection.fileno(), writing, timeout_s)
    if connection.watchers is None:
        loop, fileno = get_hub().loop, connection.fileno()
        connection.watchers = (loop.io(fileno, 1), loop.io(fileno, 2))
    return _watch(connection.watchers[writing], timeout_s)


_READY, _TIMED_OUT = object(), object()


def _watch(watcher: Any, timeout_s: float | None) -> bool:
    """Wait for one watcher; False if the timeout came first. The timeout is a bare loop
    timer that wakes this greenlet: a `gevent.Timeout` (an exception object thrown into
    the greenlet) made the deadline's layer of bench.dbpath 26 us a request instead of 9."""
    if watcher.callback is not None:
        raise ConcurrentObjectUseError(f"the connection is already waited on: {watcher.callback}")
    hub = get_hub()
    waiter = Waiter(hub)
    watcher.start(waiter.switch, _READY)
    timer = None
    if timeout_s is not None:
        timer = hub.loop.timer(timeout_s)
        timer.start(waiter.switch, _TIMED_OUT)
    try:
        woken = waiter.get()
    finally:
        watcher.stop()
        if timer is not None:
            timer.close()
    if woken is not _READY and woken is not _TIMED_OUT:
        raise ConcurrentObjectUseError(f"a wait on the database was woken by {woken!r}")
    return woken is _READY


def _past_deadline(connection: GatewayConnection) -> None:
    """Cancel once, within the grace period; after it, give up on the connection."""
    if connection.cancelled:
        raise DeadlineExceeded
    connection.cancelled = True
    connection.deadline = time.monotonic() + CANCEL_GRACE_S
    libpq.cancel(connection, CANCEL_GRACE_S, ready)


def wait_for_database(connection: ext.connection) -> None:
    """psycopg2's wait callback: poll until done, waiting within the limits above."""
    connecting_until = _connect_deadline(connection)
    while True:
        state = connection.poll()
        if state == ext.POLL_OK:
            return
        if state not in (ext.POLL_READ, ext.POLL_WRITE):
            raise psycopg2.OperationalError(f"unexpected state from psycopg2 poll(): {state}")
        limit = getattr(connection, "read_limit", None)
        if limit is not None and libpq.buffered(connection) > limit:
            raise ResultTooLarge
        until = connecting_until or getattr(connection, "deadline", None)
        timeout_s = None if until is None else max(until - time.monotonic(), 0.0)
        if _ready_connection(connection, state == ext.POLL_WRITE, timeout_s):
            continue
        if connecting_until is not None:
            raise psycopg2.OperationalError("timeout expired while connecting")
        _past_deadline(connection)


def install() -> None:
    """Make every psycopg2 connection of this process wait through `wait_for_database`."""
    ext.set_wait_callback(wait_for_database)
