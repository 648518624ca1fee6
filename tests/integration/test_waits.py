"""Under gevent, a connection waits on watchers of its own (app.wait), and they stay right: the
deadline's cancel still comes through them, and a new connection on the socket number of a
closed one is waited on correctly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness.local.postgres import LocalPostgres
from tests.integration.conftest import DATABASE

# A gevent worker's setting: everything patched before app.wait is imported.
_UNDER_GEVENT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import sys, time
    import psycopg2
    from app import wait

    wait.install()
    dsn = sys.argv[1]
    first = psycopg2.connect(dsn, connection_factory=wait.GatewayConnection)
    first.autocommit = True
    cursor = first.cursor()
    cursor.execute("select 1")
    watchers, socket_number = first.watchers, first.fileno()
    assert watchers is not None, "no watchers kept"
    for _ in range(3):
        cursor.execute("select 1")
    assert first.watchers is watchers, "watchers made again"

    first.start_deadline(0.3)
    started = time.monotonic()
    try:
        cursor.execute("select pg_sleep(10)")
    except psycopg2.errors.QueryCanceled:
        pass
    cancelled_after = time.monotonic() - started
    first.close()

    second = psycopg2.connect(dsn, connection_factory=wait.GatewayConnection)
    with second.cursor() as cursor:
        cursor.execute("select 2")
        answer = cursor.fetchone()[0]
    print(cancelled_after, answer, second.fileno() == socket_number)
    """
)


def test_kept_watchers_carry_the_cancel_and_a_reused_socket_number(
    postgres: LocalPostgres,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_GEVENT, postgres.dsn(dbname=DATABASE)],
        env={"PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    cancelled_after, answer, same_number = done.stdout.split()
    assert float(cancelled_after) < 2.0  # the deadline's cancel, not the sleep's end
    assert answer == "2"
    assert same_number == "True"  # the case the last check is about did happen
