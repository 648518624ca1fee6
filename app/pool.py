"""A bounded, thread-safe psycopg2 connection pool that waits, first come first served.

psycopg2's own pools raise at once when exhausted and cannot report how many callers
wait, both of which the gateway needs (503 only after a bounded wait; pool metrics).
Waiters are served in arrival order: a released connection, or a freed slot, goes
straight to the longest waiter, so a request that arrives later cannot take it first
(under gevent that barging starved some requests for seconds).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable

import psycopg2
import psycopg2.extensions as ext


class PoolTimeout(Exception):
    """No connection became free within the wait limit."""


class ConnectFailed(Exception):
    """PostgreSQL refused or did not answer a new connection."""


class _Waiter:
    """A caller in the queue: handed a `connection`, or (None) a slot to connect itself."""

    __slots__ = ("connection", "event")

    def __init__(self) -> None:
        self.connection: ext.connection | None = None
        self.event = threading.Event()


class ConnectionPool:
    """Idle connections are reused newest-first; broken ones are closed, never reused.

    Invariant: there are idle connections only while nobody waits.
    """

    def __init__(
        self,
        connect: Callable[[], ext.connection],
        max_size: int,
        on_change: Callable[[ConnectionPool], None] = lambda _pool: None,
        login: str = "",
    ) -> None:
        self.login = login  # the PostgreSQL login its connections use (metrics label)
        self.connect = connect  # a new connection of that login, outside the slot count
        self._max_size = max_size
        self._on_change = on_change
        self._idle: list[ext.connection] = []
        self._waiters: deque[_Waiter] = deque()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        return self._size - len(self._idle)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self, timeout_s: float) -> ext.connection:
        waiter = None
        with self._lock:
            if self._idle:
                connection = self._idle.pop()
            elif self._size < self._max_size:
                self._size += 1  # reserve the slot before connecting outside the lock
                connection = None
            else:
                waiter = _Waiter()
                self._waiters.append(waiter)
        self._on_change(self)
        if waiter is not None:
            connection = self._wait(waiter, timeout_s)
        return connection if connection is not None else self._open()

    def release(self, connection: ext.connection, broken: bool = False) -> None:
        if broken or connection.closed:
            self.close_quietly(connection)
            self._free_slot()
            return
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.connection = connection
                waiter.event.set()
            else:
                self._idle.append(connection)
        self._on_change(self)

    def discard_idle(self) -> None:
        """Close every idle connection: after one proved broken, its siblings likely are."""
        with self._lock:
            stale, self._idle = self._idle, []
            self._size -= len(stale)
        for connection in stale:
            self.close_quietly(connection)
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

    def _wait(self, waiter: _Waiter, timeout_s: float) -> ext.connection | None:
        """The connection handed over, or None for a slot; PoolTimeout if neither came."""
        if not waiter.event.wait(max(timeout_s, 0)):
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if queued:
                self._on_change(self)
                raise PoolTimeout
            # Served between the timeout and the lock: take what was handed over.
        return waiter.connection

    def _open(self) -> ext.connection:
        """Connect in a slot already counted in `size`; a failure frees the slot."""
        try:
            connection = self.connect()
        except psycopg2.Error as error:
            self._free_slot()
            raise ConnectFailed(str(error)) from error
        self._on_change(self)
        return connection

    def _free_slot(self) -> None:
        """A connection is gone: the longest waiter may open a new one in its place."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().event.set()
            else:
                self._size -= 1
        self._on_change(self)

    @staticmethod
    def close_quietly(connection: ext.connection) -> None:
        with contextlib.suppress(psycopg2.Error):  # a dead connection has nothing to report
            connection.close()
