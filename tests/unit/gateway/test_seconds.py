"""app.seconds: a second's text is formatted once, and again for the next second."""

from __future__ import annotations

from app.seconds import EverySecond


def test_a_seconds_text_is_formatted_once_and_the_next_seconds_anew() -> None:
    formatted: list[int] = []

    def format(second: int) -> str:
        formatted.append(second)
        return f"second {second}"

    every = EverySecond(format)
    assert [every(7), every(7), every(8), every(8), every(7)] == [
        "second 7",
        "second 7",
        "second 8",
        "second 8",
        "second 7",
    ]
    assert formatted == [7, 8, 7]
