"""The gateway beside replication: no acknowledgement a synchronous standby never confirmed
(whatever the client's SQL did to `synchronous_commit`), and no write answered from a standby.

Measured at 3580ed8 (before): with `synchronous_standby_names` naming a standby that never
came, an INSERT with `timeout_ms` 1000 was answered 200 after the deadline (the cancel ended
the COMMIT's wait for the standby, and PostgreSQL then completes a COMMIT with a WARNING:
committed on the primary alone); a gateway whose DATABASE_URL reached a hot standby answered
the admin's reads 200 and its INSERT 403 (`25006`, read-only), an answer the client would
believe.
"""

from __future__ import annotations

import time

import psycopg2
import pytest

from harness.local.postgres import LocalPostgres
from tests.integration.conftest import DATABASE, LOGINS, start_postgres

ADMIN, READER = "replication-admin", "replication-reader"
ABSENT_STANDBY = "pgw_absent_standby"
TIMEOUT_MS = 1000
GRACE_S = 2.0  # app.wait.CANCEL_GRACE_S
PROMOTED_WITHIN_S = 30
REPLAYED_WITHIN_S = 10
# A client's SQL that would have its own COMMIT skip the standby: the session reset runs
# RESET ALL before the COMMIT, back to the pinned `synchronous_commit = on`.
WEAKENINGS = (
    "",
    "set synchronous_commit = off; ",
    "set local synchronous_commit = local; ",
    "select set_config('synchronous_commit', 'off', false); ",
)


def _superuser(server: LocalPostgres, *statements: str) -> object:
    """Run statements as the superuser in autocommit, not waiting for a synchronous standby
    itself; the last one's first row."""
    connection = psycopg2.connect(
        server.dsn(dbname=DATABASE), options="-c synchronous_commit=local -c search_path=app"
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return cursor.fetchone() if cursor.description else None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory):
    server = start_postgres(tmp_path_factory.mktemp("primary"))
    _superuser(
        server,
        "create table acknowledged (id integer)",
        "alter table acknowledged owner to gateway",
        "grant select on acknowledged to reader",
    )
    yield server
    server.stop()


def _tokens(start_gateway_for, server: LocalPostgres, **env: str):
    """A gateway on `server` with an admin token and a read-only reader token."""
    return start_gateway_for(
        database_url=LOGINS.gateway_dsn(server),
        API_TOKENS=f"{ADMIN},{READER}:reader",
        READ_ONLY_ROLES="reader",
        WORKERS="1",
        **env,
    )


def test_a_commit_whose_wait_for_a_synchronous_standby_was_cancelled_is_no_200(
    primary, start_gateway_for
) -> None:
    gateway = _tokens(start_gateway_for, primary)
    _superuser(
        primary,
        f"alter system set synchronous_standby_names = '{ABSENT_STANDBY}'",
        "select pg_reload_conf()",
    )
    try:
        time.sleep(0.5)  # the reload reaches the backends
        for row, weakening in enumerate(WEAKENINGS, start=1):
            started = time.monotonic()
            answer = gateway.query(
                f"{weakening}insert into acknowledged values ({row})",
                token=ADMIN,
                timeout_ms=TIMEOUT_MS,
            )
            took = time.monotonic() - started
            assert answer.status_code == 504, (weakening, answer.text)
            error = answer.json()["error"]
            assert error["sqlstate"] == "57014"
            assert "may or may not have been committed" in error["message"]
            assert took < TIMEOUT_MS / 1000 + GRACE_S + 1
            # Why it is no acknowledgement: the row is on the primary, and on no standby.
            found = _superuser(primary, f"select count(*) from acknowledged where id = {row}")
            assert found == (1,)
        # A request that writes nothing has nothing to wait for.
        assert gateway.query("select 1", token=ADMIN).status_code == 200
    finally:
        _superuser(
            primary, "alter system reset synchronous_standby_names", "select pg_reload_conf()"
        )


def test_a_login_that_writes_is_not_served_by_a_standby(
    primary, start_gateway_for, tmp_path
) -> None:
    standby = primary.start_standby(tmp_path / "standby")
    try:
        gateway = _tokens(start_gateway_for, standby)
        for sql in ("select 1", "insert into acknowledged values (20)"):
            answer = gateway.query(sql, token=ADMIN)
            assert answer.status_code == 503, (sql, answer.status_code, answer.text)
            assert "standby" in answer.json()["error"]["message"]
            assert answer.headers["Retry-After"]
        # A read-only login may read from a standby (what a replicas Service is for).
        assert gateway.query("select 1", token=READER).status_code == 200
        assert _superuser(standby, "select pg_promote()") == (True,)
        deadline = time.monotonic() + PROMOTED_WITHIN_S
        while (
            answer := gateway.query("insert into acknowledged values (30)", token=ADMIN)
        ).status_code == 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
    finally:
        standby.stop()


def test_a_read_only_role_reads_from_the_standby_it_is_pointed_at(
    primary, start_gateway_for, tmp_path
) -> None:
    standby = primary.start_standby(tmp_path / "standby")
    try:
        gateway = _tokens(
            start_gateway_for, primary, POSTGRES_HOST_READER=f"127.0.0.1:{standby.port}"
        )
        where = "select pg_is_in_recovery() as standby"
        assert gateway.query(where, token=ADMIN).json() == {"result": [{"standby": False}]}
        assert gateway.query(where, token=READER).json() == {"result": [{"standby": True}]}
        assert gateway.query("insert into acknowledged values (40)", token=ADMIN).ok
        # The reader sees a write once the standby has replayed it (here, asynchronously).
        deadline = time.monotonic() + REPLAYED_WITHIN_S
        seen = "select count(*) as n from acknowledged where id = 40"
        while (answer := gateway.query(seen, token=READER).json()) != {"result": [{"n": 1}]}:
            assert time.monotonic() < deadline, f"the standby never showed the row: {answer}"
            time.sleep(0.1)
        refused = gateway.query("insert into acknowledged values (41)", token=READER)
        assert refused.status_code == 403, refused.text
    finally:
        standby.stop()
