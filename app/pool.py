"""A bounded, thread-safe psycopg2 connection pool that waits instead of failing.

psycopg2's own pools raise at once when exhausted and cannot report how many callers
wait, both of which the gateway needs (503 only after a bounded wait; pool metrics).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import psycopg2
import psycopg2.extensions as ext


class PoolTimeout(Exception):
    """No connection became free within the wait limit."""


class ConnectFailed(Exception):
    """PostgreSQL refused or did not answer a new connection."""


class ConnectionPool:
    """Idle connections are reused newest-first; broken ones are closed, never reused."""

    def __init__(
        self,
        connect: Callable[[], ext.connection],
        max_size: int,
        on_change: Callable[[ConnectionPool], None] = lambda _pool: None,
    ) -> None:
        self._connect = connect
        self._max_size = max_size
        self._on_change = on_change
        self._idle: list[ext.connection] = []
        self._size = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        return self._size - len(self._idle)

    @property
    def waiting(self) -> int:
        return self._waiting

    def acquire(self, timeout_s: float) -> ext.connection:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._idle and self._size >= self._max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout
                self._waiting += 1
                self._on_change(self)
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            if self._idle:
                connection = self._idle.pop()
                self._on_change(self)
                return connection
            self._size += 1  # reserve the slot before connecting outside the lock
        try:
            connection = self._connect()
        except psycopg2.Error as error:
            self._forget_one()
            raise ConnectFailed(str(error)) from error
        self._on_change(self)
        return connection

    def release(self, connection: ext.connection, broken: bool = False) -> None:
        if broken or connection.closed:
            self._close(connection)
            self._forget_one()
            return
        with self._cond:
            self._idle.append(connection)
            self._cond.notify()
        self._on_change(self)

    def discard_idle(self) -> None:
        """Close every idle connection: after one proved broken, its siblings likely are."""
        with self._cond:
            stale, self._idle = self._idle, []
            self._size -= len(stale)
            self._cond.notify(len(stale))
        for connection in stale:
            self._close(connection)
        self._on_change(self)

    def fill(self, count: int) -> None:
        """Open up to `count` idle connections ahead of traffic; failures are left to later."""
        opened = []
        try:
            for _ in range(count - self._size):
                opened.append(self.acquire(timeout_s=0))
        except (PoolTimeout, ConnectFailed):
            pass
        for connection in opened:
            self.release(connection)

    def close(self) -> None:
        self.discard_idle()

    def _forget_one(self) -> None:
        with self._cond:
            self._size -= 1
            self._cond.notify()
        self._on_change(self)

    @staticmethod
    def _close(connection: ext.connection) -> None:
        with contextlib.suppress(psycopg2.Error):  # a dead connection has nothing to report
            connection.close()
