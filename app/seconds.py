"""Text that changes once a second (the Date header, a log line's second), formatted once a
second rather than for every answer or line."""

from __future__ import annotations

from collections.abc import Callable


class EverySecond:
    """`format(second)` for a Unix second, kept until a call for another second."""

    def __init__(self, format: Callable[[int], str]) -> None:
        self._format = format
        self._second, self._text = -1, ""

    def __call__(self, second: int) -> str:
        if second != self._second:
            self._second, self._text = second, self._format(second)
        return self._text
