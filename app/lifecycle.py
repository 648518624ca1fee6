"""Draining state and in-flight count, shared by gunicorn's master and its workers.

The values live in shared memory created at import, before gunicorn forks, so the
master can flip `draining` on SIGTERM and every worker's `/readyz` sees it at once.
"""

from __future__ import annotations

import multiprocessing
import time


class Lifecycle:
    def __init__(self) -> None:
        self._draining = multiprocessing.Value("b", 0)
        self._inflight = multiprocessing.Value("i", 0)

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    @property
    def inflight(self) -> int:
        return int(self._inflight.value)

    def start_draining(self) -> None:
        self._draining.value = 1

    def enter(self) -> None:
        with self._inflight.get_lock():
            self._inflight.value += 1

    def leave(self) -> None:
        with self._inflight.get_lock():
            self._inflight.value -= 1

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        while self.inflight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


LIFECYCLE = Lifecycle()
