"""psycopg2 under gunicorn's gevent worker: wait for PostgreSQL without blocking the worker.

gevent makes Python sockets cooperative, but libpq does its own I/O in C: without a wait
callback one query in flight would stall every other request of that worker. With the
callback, libpq runs asynchronously and each wait yields to the other greenlets.
libpq ignores `connect_timeout` in that mode, so the callback enforces it while connecting.
"""

from __future__ import annotations

import time

import psycopg2
import psycopg2.extensions as ext
from gevent.socket import wait_read, wait_write


def _connect_deadline(connection: ext.connection) -> float | None:
    """While a connection is being set up, the monotonic time its connect_timeout ends."""
    if connection.status != ext.STATUS_SETUP:
        return None
    timeout = ext.parse_dsn(connection.dsn).get("connect_timeout", "")
    if not timeout.isdigit() or int(timeout) <= 0:
        return None
    return time.monotonic() + int(timeout)


def wait_cooperatively(connection: ext.connection) -> None:
    """psycopg2's wait callback: poll until done, yielding to gevent while the socket waits."""
    deadline = _connect_deadline(connection)
    while True:
        state = connection.poll()
        if state == ext.POLL_OK:
            return
        if state not in (ext.POLL_READ, ext.POLL_WRITE):
            raise psycopg2.OperationalError(f"unexpected state from psycopg2 poll(): {state}")
        wait = wait_read if state == ext.POLL_READ else wait_write
        if deadline is None:
            wait(connection.fileno())
        else:
            remaining = max(deadline - time.monotonic(), 0.0)
            expired = psycopg2.OperationalError("timeout expired while connecting")
            wait(connection.fileno(), timeout=remaining, timeout_exc=expired)


def make_psycopg2_cooperative() -> None:
    """Install the callback for every connection of this process (a gevent worker)."""
    ext.set_wait_callback(wait_cooperatively)
