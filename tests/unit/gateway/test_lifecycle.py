"""In-flight requests are counted per worker, and a worker that died counts no more."""

from __future__ import annotations

import os

from app.lifecycle import Lifecycle


def test_a_dead_workers_requests_are_forgotten() -> None:
    lifecycle = Lifecycle()
    lifecycle.enter()
    lifecycle.enter()
    assert lifecycle.inflight == 2
    assert not lifecycle.wait_idle(0.1)
    lifecycle.forget(os.getpid())  # as gunicorn's master does when the worker exits
    assert lifecycle.inflight == 0
    assert lifecycle.wait_idle(0.1)


def test_leaving_balances_entering() -> None:
    lifecycle = Lifecycle()
    lifecycle.enter()
    lifecycle.leave()
    assert lifecycle.inflight == 0


def test_a_forked_workers_requests_count_in_the_shared_total() -> None:
    lifecycle = Lifecycle()
    lifecycle.enter()  # the parent's slot
    child = os.fork()
    if child == 0:  # a worker: its own slot, in the memory the parent sees
        lifecycle.enter()
        lifecycle.enter()
        lifecycle.leave()
        os._exit(0)
    os.waitpid(child, 0)
    assert lifecycle.inflight == 2
    lifecycle.forget(child)
    assert lifecycle.inflight == 1
