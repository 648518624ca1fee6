"""`python -m bench.dbpath`: the CPU of one request's database path, built up layer by layer.

py-spy gives the time inside psycopg2's C code (the messages sent, the waits) to the
Python frame that called it, so its breakdown cannot tell the messages themselves from
the gateway's Python around them. Here one process, under gevent as a worker runs, with
CONCURRENCY greenlets at once (as the same-run comparison's wrk keeps a worker busy: a
core that idles between round trips makes every wake-up dearer), times in alternated
rounds (medians, CPU per call from `time.process_time`):
1. the very messages `Database.query` sent (recorded once), replayed on connections of
   their own through the gateway's gevent wait callback (app.wait), no deadline;
2. with the request's deadline (a timer per wait);
3. with the pool and the session reset: `Logins.acquire` and `Logins.commit`;
4. with the `Transaction` (the statement scan, cursors, batches, JSON);
5. `Database.query` whole (metrics, error handling, the deadline's bookkeeping).
Each layer's cost is the difference to the one before. No HTTP: bench.profile and the
floors (bench.floors) cover the server and Flask.

    DATABASE_URL=postgresql://... python -m bench.dbpath --workload point
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import psycopg2
import psycopg2.extensions as ext
from gevent import monkey

from app import metrics, wait
from app.db import Database
from app.settings import load_settings
from app.transaction import Transaction
from app.typecast import TypeCatalog
from app.validation import parse_query
from bench.database import ITEMS
from bench.systems import ROOT
from bench.workloads import WORKLOADS, Workload

CONCURRENCY = 8  # the same-run comparison's
LAYERS = (
    "the recorded messages, app.wait's gevent waits",
    "+ the request's deadline",
    "+ pool acquire, session reset (Logins)",
    "+ Transaction (scan, cursors, batches, JSON)",
    "Database.query (metrics, errors)",
)
_SENT: list[bytes] = []  # what _RecordingCursor sent


class _RecordingCursor(ext.cursor):
    """Keeps the text of every message it sends in _SENT."""

    def execute(self, query: Any, vars: Any = None) -> None:
        try:
            super().execute(query, vars)
        finally:
            if self.query is not None:
                _SENT.append(self.query)


def _replay(connection: ext.connection, messages: list[bytes]) -> None:
    with connection.cursor() as cursor:
        for message in messages:
            cursor.execute(message)
            if cursor.description is not None:
                cursor.fetchall()


def layers(dsn: str, workload: Workload) -> list[tuple[str, Callable[[int], None]]]:
    """The LAYERS (module doc), each a call of one request's database path by the greenlet
    of that number (below CONCURRENCY)."""
    settings = load_settings({**os.environ, "DATABASE_URL": dsn})
    database = Database(settings)
    body: dict[str, Any] = {"query": workload.gateway_sql}
    if workload.random_id:
        body["params"] = [ITEMS // 2]
    parsed = parse_query(body, settings, None)
    timeout_s = parsed.options.timeout_ms / 1000

    def query(_greenlet: int = 0) -> None:
        database.query(parsed.statement, parsed.options, None)

    connection = database.logins.acquire(None)
    database.logins.commit(connection)  # back in the pool, where query() takes it again
    connection.cursor_factory = _RecordingCursor
    query()
    connection.cursor_factory = ext.cursor
    messages = list(_SENT)
    if len(messages) < 2:
        raise SystemExit(f"bench.dbpath: expected two messages or more, recorded {messages}")

    own = [
        psycopg2.connect(dsn, connection_factory=wait.GatewayConnection) for _ in range(CONCURRENCY)
    ]
    for replayer in own:
        replayer.autocommit = True

    def messages_only(greenlet: int) -> None:
        _replay(own[greenlet], messages)

    def deadline(greenlet: int) -> None:
        own[greenlet].start_deadline(timeout_s)
        _replay(own[greenlet], messages)
        own[greenlet].stop_deadline()

    def pooled(_greenlet: int) -> None:
        session = database.logins.acquire(None)
        session.start_deadline(timeout_s)
        _replay(session, messages[:-1])  # the last is the reset and COMMIT, sent by commit
        database.logins.commit(session)

    catalog = TypeCatalog()

    def transaction(_greenlet: int) -> None:
        session = database.logins.acquire(None)
        session.start_deadline(timeout_s)
        Transaction(session, parsed.options, settings, catalog).run(parsed.statement)
        database.logins.commit(session)

    calls = [
        messages_only,
        deadline,
        pooled,
        transaction,
        query,
    ]
    return list(zip(LAYERS, calls, strict=True))


def _repeat(call: Callable[[int], None], greenlet: int, times: int) -> None:
    for _ in range(times):
        call(greenlet)


def measure(dsn: str, workload: Workload, calls: int, rounds: int) -> list[tuple[str, float]]:
    """Each layer's median CPU per call (us) over `rounds` alternated rounds, `calls` a
    round shared by CONCURRENCY greenlets."""
    wait.install()
    timed = layers(dsn, workload)
    each = max(calls // CONCURRENCY, 1)
    figures: dict[str, list[float]] = {name: [] for name, _ in timed}
    for _ in range(rounds + 1):  # the first round warms up and is not kept
        for name, call in timed:
            started = time.process_time()
            gevent.joinall(
                [gevent.spawn(_repeat, call, greenlet, each) for greenlet in range(CONCURRENCY)],
                raise_error=True,
            )
            figures[name].append((time.process_time() - started) / (each * CONCURRENCY) * 1e6)
    return [(name, statistics.median(values[1:])) for name, values in figures.items()]


def render(workload: Workload, figures: list[tuple[str, float]], calls: int, rounds: int) -> str:
    lines = [
        f"database path of one request, {workload.title}: CPU per call in-process, "
        f"median of {rounds} rounds of {calls} calls",
        f"{'layer':46} {'us':>7} {'added':>7}",
    ]
    before = 0.0
    for name, micros in figures:
        lines.append(f"{name:46} {micros:7.1f} {micros - before:+7.1f}")
        before = micros
    return "\n".join(lines)


def run_pinned(dsn: str, workloads: list[str], cpu: int, calls: int, rounds: int) -> list[str]:
    """This breakdown for each workload (keys), each in a process of its own on `cpu` alone
    (as the same-run comparison pins a server), as the bench report prints them. The DSN
    goes in the environment, as the gateway's own: not in argv, where ps and errors show it."""
    out = []
    for key in workloads:
        command = [sys.executable, "-m", "bench.dbpath", "--workload", key, "--cpu", str(cpu)]
        command += ["--calls", str(calls), "--rounds", str(rounds)]
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": dsn},
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"bench.dbpath --workload {key} failed:\n{done.stderr[-3000:]}")
        out.append(done.stdout)
    return out


def main() -> int:
    metrics.run_with_multiprocess_files("bench.dbpath")  # as `python -m app` runs
    parser = argparse.ArgumentParser(prog="python -m bench.dbpath", description=__doc__)
    parser.add_argument("--workload", choices=[w.key for w in WORKLOADS], default="select1")
    parser.add_argument("--calls", type=int, default=1000, help="per layer and round [1000]")
    parser.add_argument("--rounds", type=int, default=5, help="[5]")
    parser.add_argument("--cpu", type=int, help="run on this CPU alone")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    monkey.patch_all()
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        parser.error("DATABASE_URL must hold the gateway's login to a seeded bench database")
    workload = next(w for w in WORKLOADS if w.key == args.workload)
    figures = measure(dsn, workload, args.calls, args.rounds)
    print(render(workload, figures, args.calls, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
