"""bench.dbpath against the real server: every layer of the database path runs and is timed."""

from __future__ import annotations

import re

from bench import dbpath
from harness.local.postgres import LocalPostgres
from tests.integration.conftest import LOGINS

LAYER = re.compile(r"^(.+?)\s+(\d+\.\d)\s+([+-]\d+\.\d)$")


def test_each_layer_of_the_database_path_is_timed(postgres: LocalPostgres) -> None:
    (report,) = dbpath.run_pinned(LOGINS.gateway_dsn(postgres), ["select1"], 0, 20, 1)
    rows = [match.groups() for line in report.splitlines() if (match := LAYER.match(line))]
    assert tuple(name for name, _, _ in rows) == dbpath.LAYERS, report
    assert all(float(micros) > 0 for _, micros, _ in rows), report
