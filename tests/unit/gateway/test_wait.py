"""app.wait's wait on a connection's own watcher, on a real socket pair in gevent's loop."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import gevent
import pytest
from gevent import get_hub

from app.wait import _REQUEST_DEADLINE, _watch, connecting_until


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_a_wait_says_ready_when_the_socket_is_and_false_when_the_timeout_comes_first(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    watcher = get_hub().loop.io(left.fileno(), 1)
    started = time.monotonic()
    assert _watch(watcher, 0.2) is False
    assert 0.15 < time.monotonic() - started < 2, "the timeout did not end the wait on time"
    gevent.spawn_later(0.05, right.send, b"x")
    assert _watch(watcher, 5) is True
    # Each wait stops the watcher: the next one on it is not refused, and ends by its own
    # timer once nothing more arrives.
    left.recv(1)
    assert watcher.callback is None, "the watcher was left started"
    started = time.monotonic()
    assert _watch(watcher, 0.3) is False
    assert time.monotonic() - started > 0.25


def test_a_wait_without_a_timeout_ends_when_the_socket_is_ready(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    watcher = get_hub().loop.io(left.fileno(), 1)
    gevent.spawn_later(0.05, right.send, b"x")
    assert _watch(watcher, None) is True


def test_two_waits_on_one_watcher_are_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, _right = pair
    watcher = get_hub().loop.io(left.fileno(), 1)
    first = gevent.spawn(_watch, watcher, 0.3)
    gevent.sleep(0)
    with pytest.raises(gevent.exceptions.ConcurrentObjectUseError):
        _watch(watcher, 0.3)
    assert first.get() is False


def test_a_connection_opened_inside_a_request_has_its_deadline_only_there() -> None:
    assert _REQUEST_DEADLINE.get() is None
    with connecting_until(5.0):
        assert _REQUEST_DEADLINE.get() == 5.0
        with pytest.raises(RuntimeError), connecting_until(1.0):
            assert _REQUEST_DEADLINE.get() == 1.0
            raise RuntimeError("the connect failed")
        assert _REQUEST_DEADLINE.get() == 5.0  # the outer one's again, after an error too
    assert _REQUEST_DEADLINE.get() is None
