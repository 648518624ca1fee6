"""The writers' measure of how long writes stopped, from the times their inserts were
answered (pure: the answers are set by hand, no thread runs)."""

from __future__ import annotations

import pytest

from harness.e2e.writers import Writers


def writers_with(answers: dict[int, tuple[int | str, float]]) -> Writers:
    writers = Writers(deployment=None, table="t")
    writers.answers = {row: status for row, (status, _) in answers.items()}
    writers.answered_at = {row: at for row, (_, at) in answers.items()}
    return writers


def test_the_longest_gap_is_between_acknowledged_inserts_only() -> None:
    writers = writers_with(
        {1: (200, 10.0), 2: (503, 11.0), 3: (503, 13.0), 4: (200, 15.5), 5: (200, 16.0)}
    )
    assert writers.longest_write_gap_s(9.0, 17.0) == pytest.approx(5.5)


def test_the_window_bounds_count_as_acknowledged() -> None:
    writers = writers_with({1: (200, 2.0), 2: (200, 3.0), 3: ("ConnectionError", 8.0)})
    assert writers.longest_write_gap_s(1.0, 10.0) == pytest.approx(7.0)


def test_no_acknowledged_insert_in_the_window_is_the_whole_window() -> None:
    writers = writers_with({1: (200, 0.5), 2: (503, 4.0), 3: (200, 12.0)})
    assert writers.longest_write_gap_s(1.0, 11.0) == pytest.approx(10.0)


def test_the_gap_says_when_writes_stopped_and_resumed() -> None:
    writers = writers_with({1: (200, 2.0), 2: (503, 3.0), 3: (200, 9.0), 4: (200, 9.5)})
    assert writers.longest_write_gap(1.0, 10.0) == (2.0, 9.0)
