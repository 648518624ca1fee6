"""Draining state and in-flight requests, shared by gunicorn's master and its workers.

The values live in shared memory created at import, before gunicorn forks, so the master
can flip `draining` on SIGTERM and every worker's `/readyz` sees it at once. Each worker
counts its own requests in a slot of its own, which the master frees when the worker
exits: requests of a worker that was killed never keep a drain waiting. Only the worker
writes its count, so moving it takes no lock; taking a slot and freeing one do.
"""

from __future__ import annotations

import multiprocessing
import os
import time

SLOTS = 128  # more than WORKERS may be (64), with room for workers being replaced

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)  # gunicorn forks its workers


def current_pid() -> int:
    """This process's pid, read once per process (again after each fork): os.getpid() is a
    syscall, and the request path asks for it several times (here and app.metrics)."""
    return _pid


class Lifecycle:
    def __init__(self) -> None:
        # A flag the master sets once, read at every answer: one byte needs no lock.
        self._draining = multiprocessing.RawValue("b", 0)
        # (pid, requests in flight) per worker; pid 0 marks a free slot.
        self._slots = multiprocessing.Array("q", 2 * SLOTS)
        self._counts = self._slots.get_obj()
        self._slot: tuple[int, int] | None = None  # (pid, index) of this process

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    @property
    def inflight(self) -> int:
        with self._slots.get_lock():
            return sum(self._slots[2 * index + 1] for index in range(SLOTS))

    def start_draining(self) -> None:
        self._draining.value = 1

    def _index(self) -> int:
        pid = _pid
        if self._slot is not None and self._slot[0] == pid:
            return self._slot[1]
        with self._slots.get_lock():
            for index in range(SLOTS):
                if self._slots[2 * index] in (0, pid):
                    self._slots[2 * index], self._slots[2 * index + 1] = pid, 0
                    self._slot = (pid, index)
                    return index
        raise RuntimeError(f"more than {SLOTS} processes serving requests")

    def enter(self) -> None:
        self._count(+1)

    def leave(self) -> None:
        self._count(-1)

    def _count(self, change: int) -> None:
        """This process's requests in flight, in its raw slot (the synchronized wrapper
        would take the lock at each access): no other process writes a slot while its
        worker lives, and an aligned 8-byte store is read whole."""
        index = 2 * self._index() + 1
        self._counts[index] += change

    def forget(self, pid: int) -> None:
        """A worker exited (or was killed): its requests are no longer in flight."""
        with self._slots.get_lock():
            for index in range(SLOTS):
                if self._slots[2 * index] == pid:
                    self._slots[2 * index], self._slots[2 * index + 1] = 0, 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        while self.inflight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


LIFECYCLE = Lifecycle()
