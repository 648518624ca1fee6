"""Writers: threads inserting unique ids through the gateway, each answer recorded by id, so
a check can ask afterwards whether every insert answered 200 is in the table. The hard-kill
and the upgrade checks write this way while they disrupt PostgreSQL.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import requests

WRITERS = 4
PAUSE_AFTER_FAILURE_S = 0.2


class Writers:
    """`WRITERS` threads inserting ids into `table` (id bigint primary key) with
    `deployment.query` until stopped; ids are unique across threads."""

    def __init__(self, deployment: Any, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"not a plain table name: {table!r}")
        self.deployment, self.table = deployment, table
        self.answers: dict[int, int | str] = {}
        self.answered_at: dict[int, float] = {}  # time.monotonic() of each answer
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._write, args=(first,), daemon=True)
            for first in range(WRITERS)
        ]

    def _write(self, first: int) -> None:
        insert = f"insert into {self.table} (id) values (%s)"  # noqa: S608 - a checked name
        for row in range(first, 10**9, WRITERS):
            if self.stop.is_set():
                return
            try:
                status: int | str = self.deployment.query(
                    insert, params=[row], timeout_ms=5000
                ).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            self.answers[row] = status
            self.answered_at[row] = time.monotonic()
            if status != 200:
                time.sleep(PAUSE_AFTER_FAILURE_S)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def acknowledged(self) -> set[int]:
        return {row for row, status in list(self.answers.items()) if status == 200}

    def longest_write_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time between two acknowledged inserts (time.monotonic()) within
        [start, end], the bounds included as if acknowledged, as (from, to): when writes
        stopped and when they were acknowledged again."""
        answered = self.answered_at
        times = sorted(
            answered[row] for row in self.acknowledged() if start <= answered[row] <= end
        )
        edges = [start, *times, end]
        return max(itertools.pairwise(edges), key=lambda pair: pair[1] - pair[0])

    def longest_write_gap_s(self, start: float, end: float) -> float:
        """How long writes stopped within [start, end] (longest_write_gap's length)."""
        stopped, resumed = self.longest_write_gap(start, end)
        return resumed - stopped

    def lost(self) -> tuple[int, list[int]]:
        """(rows in the table, acknowledged ids missing from it), compared in PostgreSQL: the
        table may hold more rows than a result may carry."""
        table = self.table
        query = (
            "select count(*) as present, array(select unnest(%s::bigint[]) except "  # noqa: S608 - a checked name
            f"select id from {table} order by 1) as lost from {table}"
        )
        found = self.deployment.query_once_served(query, params=[sorted(self.acknowledged())])
        found = found["result"][0]
        return found["present"], found["lost"]
