"""Under gevent, a connection waits on watchers of its own (app.wait), and they stay right: the
deadline's cancel still comes through them, a new connection on the socket number of a
closed one is waited on correctly, and a connect that moved sockets is waited on its last."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


# A connect that moves sockets: the DSN lists a member that is down, or a hot standby that
# target_session_attrs=read-write turns away, before the real server; meanwhile another
# greenlet frees a lower socket number (a client leaving), so libpq's next socket gets
# another number than its first. Watchers kept from the first socket aborted the process
# (libev: "I/O watcher with invalid fd") or waited until connect_timeout.
_MOVES_SOCKETS = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import socket, struct, sys, time
    import gevent
    import psycopg2
    from app import wait

    wait.install()

    def message(kind, payload):
        return kind + struct.pack("!I", len(payload) + 4) + payload

    def standby(client):
        # A hot standby as libpq sees it: SSL refused, trust, read-only parameters.
        while True:
            length = struct.unpack("!I", client.recv(4))[0]
            body = client.recv(length - 4)
            if struct.unpack("!I", body[:4])[0] not in (80877103, 80877104):
                break
            client.sendall(b"N")
        gevent.sleep(0.3)
        out = message(b"R", struct.pack("!I", 0))
        for name, value in [("server_version", "17.0"), ("in_hot_standby", "on"),
                            ("default_transaction_read_only", "on"),
                            ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                            ("integer_datetimes", "on"), ("standard_conforming_strings", "on")]:
            out += message(b"S", name.encode() + b"\\0" + value.encode() + b"\\0")
        client.sendall(out + message(b"K", struct.pack("!II", 1, 2)) + message(b"Z", b"I"))
        gevent.sleep(5)

    dsn, port, first = sys.argv[1:4]
    fake = socket.socket()
    fake.bind(("127.0.0.1", 0))
    if first == "standby":
        fake.listen(8)
        gevent.spawn(lambda: standby(fake.accept()[0]))
    lower = socket.socket()
    gevent.spawn_later(0.1 if first == "standby" else 0, lower.close)
    started = time.monotonic()
    connection = psycopg2.connect(
        dsn, connect_timeout=3, host="127.0.0.1,127.0.0.1",
        port=f"{fake.getsockname()[1]},{port}", target_session_attrs="read-write",
        connection_factory=wait.GatewayConnection,
    )
    connection.autocommit = True
    taken = [socket.socket() for _ in range(4)]  # new sockets take the freed numbers
    with connection.cursor() as cursor:
        cursor.execute("select 42")
        print(cursor.fetchone()[0], round(time.monotonic() - started, 2))
    """
)


@pytest.mark.parametrize("first", ["standby", "down"])
def test_a_connect_that_moves_sockets_is_waited_on_its_last_one(
    postgres: LocalPostgres, first: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MOVES_SOCKETS, postgres.dsn(dbname=DATABASE), str(postgres.port),
         first],
        env={"PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    answer, seconds = done.stdout.split()
    assert answer == "42"
    assert float(seconds) < 2.0  # not connect_timeout's 3 s
