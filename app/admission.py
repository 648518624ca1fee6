"""Fair shares: how many requests of one token, and of one client of it, a worker runs at once.

Without it, one client's slow queries took every pooled connection of its login, and the
other clients of that login (of its token or of others) waited into a 503. A token gets at
most `concurrency` requests in flight per worker, a single client address at most
`per_client` of those; a request beyond either is answered 429 with `Retry-After` at once,
before it waits for a connection. Counted per worker, as the pools are.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from app import metrics
from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.settings import Token


class Admission:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: Counter[str] = Counter()
        self._by_client: Counter[tuple[str, str]] = Counter()

    def admit(self, token: Token | None, client: str) -> Callable[[], None]:
        """Take a share of `token` for `client` (no token: no limit), or raise the 429; the
        caller calls what this returns once the request is over (a stream: once sent)."""
        if token is None:
            return _nothing
        key = (token.name, client)
        with self._lock:
            full = self._by_token[token.name] >= token.concurrency
            if full or self._by_client[key] >= token.per_client:
                metrics.record_refused(token.name)
                raise _busy(token, full)
            self._by_token[token.name] += 1
            self._by_client[key] += 1
        metrics.record_in_flight(token.name, +1)
        return lambda: self._release(token.name, key)

    def _release(self, name: str, key: tuple[str, str]) -> None:
        metrics.record_in_flight(name, -1)
        with self._lock:
            self._by_token[name] -= 1
            self._by_client[key] -= 1
            if not self._by_client[key]:
                del self._by_client[key]


def _nothing() -> None:
    return None


def _busy(token: Token, whole_token: bool) -> ApiError:
    share = (
        f"its {token.concurrency} requests at once"
        if whole_token
        else f"{token.per_client} requests at once from one client"
    )
    return ApiError(
        429,
        f"this token already has {share} in this server process; retry when one has finished",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
