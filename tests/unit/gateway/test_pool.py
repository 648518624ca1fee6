"""ConnectionPool: bounded, waits in arrival order, never reuses a broken connection.

The pool only calls `connect()` and a connection's `closed` and `close()`, so plain
objects stand in for psycopg2 connections here; real ones are covered by the integration
tests.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import psycopg2
import pytest

from app.pool import ConnectFailed, ConnectionPool, PoolTimeout


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = 0

    def close(self) -> None:
        self.closed = 1


class Connector:
    """`connect()` for the pool: numbered connections, or failures when told to."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.fail = False

    def __call__(self) -> Any:
        if self.fail:
            raise psycopg2.OperationalError("refused")
        return FakeConnection(next(self.numbers))


def pool_of(max_size: int) -> tuple[ConnectionPool, Connector]:
    connector = Connector()
    return ConnectionPool(connector, max_size), connector


def wait_for(predicate: Any, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def start_waiting(pool: ConnectionPool, got: list, timeout_s: float = 5) -> threading.Thread:
    """A thread that acquires (appending what it got) once the pool counts it as waiting."""
    before = pool.waiting
    thread = threading.Thread(target=lambda: got.append(pool.acquire(timeout_s)), daemon=True)
    thread.start()
    wait_for(lambda: pool.waiting == before + 1)
    return thread


def test_reuses_the_newest_idle_connection_and_counts() -> None:
    pool, _ = pool_of(3)
    first, second = pool.acquire(1), pool.acquire(1)
    assert (pool.size, pool.in_use, pool.waiting) == (2, 2, 0)
    pool.release(first)
    pool.release(second)
    assert (pool.size, pool.in_use) == (2, 0)
    assert pool.acquire(1) is second


def test_times_out_when_exhausted_and_forgets_the_waiter() -> None:
    pool, _ = pool_of(1)
    pool.acquire(1)
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.acquire(0.2)
    assert time.monotonic() - started >= 0.2
    assert pool.waiting == 0
    with pytest.raises(PoolTimeout):
        pool.acquire(0)


def test_waiters_are_served_in_arrival_order_and_a_newcomer_cannot_barge() -> None:
    pool, _ = pool_of(1)
    held = pool.acquire(1)
    got_first: list = []
    got_second: list = []
    first = start_waiting(pool, got_first)
    second = start_waiting(pool, got_second)

    pool.release(held)  # handed to the first waiter, not left idle for anyone
    with pytest.raises(PoolTimeout):
        pool.acquire(0)  # a newcomer, even one running before the waiter wakes
    first.join(5)
    assert got_first == [held]
    pool.release(got_first[0])
    second.join(5)
    assert got_second == [held]
    assert pool.waiting == 0


def test_a_broken_release_lets_the_longest_waiter_connect_anew() -> None:
    pool, _ = pool_of(1)
    held = pool.acquire(1)
    got: list = []
    waiter = start_waiting(pool, got)
    pool.release(held, broken=True)
    waiter.join(5)
    assert held.closed
    assert got[0] is not held
    assert got[0].number == 2
    assert pool.size == 1


def test_a_failed_connect_frees_its_slot() -> None:
    pool, connector = pool_of(1)
    connector.fail = True
    with pytest.raises(ConnectFailed):
        pool.acquire(1)
    assert pool.size == 0
    connector.fail = False
    assert pool.acquire(0).number == 1


def test_a_closed_connection_is_never_pooled_again() -> None:
    pool, _ = pool_of(2)
    connection = pool.acquire(1)
    connection.closed = 2  # the server went away while it was lent out
    pool.release(connection)
    assert pool.size == 0
    assert pool.acquire(1) is not connection


def test_discard_idle_closes_only_idle_connections() -> None:
    pool, _ = pool_of(3)
    lent = pool.acquire(1)
    idle = [pool.acquire(1), pool.acquire(1)]
    for connection in idle:
        pool.release(connection)
    pool.discard_idle()
    assert all(connection.closed for connection in idle)
    assert not lent.closed
    assert (pool.size, pool.in_use) == (1, 1)


def test_fill_opens_idle_connections_up_to_the_count_and_stops_at_a_failure() -> None:
    pool, connector = pool_of(5)
    pool.fill(3)
    assert (pool.size, pool.in_use) == (3, 0)
    connector.fail = True
    pool.fill(5)
    assert pool.size == 3


def test_on_change_sees_every_waiting_count() -> None:
    seen: list[int] = []
    pool = ConnectionPool(Connector(), 1, lambda p: seen.append(p.waiting))
    held = pool.acquire(1)
    got: list = []
    waiter = start_waiting(pool, got)
    pool.release(held)
    waiter.join(5)
    assert 1 in seen
    assert seen[-1] == 0
