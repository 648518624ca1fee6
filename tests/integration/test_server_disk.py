"""What one token can do to PostgreSQL's disk and to the logins: a read-only token writes
nothing that lasts, and no session's temporary files pass its login's temp_file_limit.

Measured at 017843a, with the reader token: `set transaction read write; select
lo_from_bytea(0, ...)` stored 256 MB a request for good (nine such requests filled the 1 GiB
volume and PostgreSQL could not restart); `alter role current_user password '...'` answered
200 and locked every gateway pod's reader pool out; one recursive CTE wrote 6.4 GB of
temporary files within its 60 s. The reader's transactions were read-only only by a role
default that SQL may switch off first; now the gateway opens them read-only, as READ_ONLY
does, and PostgreSQL refuses the writes.
"""

from __future__ import annotations

import psycopg2
import pytest

from tests.integration.conftest import LOGINS, start_postgres

ADMIN, READER = "disk-admin", "disk-reader"
NDJSON = {"Accept": "application/x-ndjson"}

# Every way the reader once wrote, and its relatives.
READER_WRITES = [
    "select lo_from_bytea(0, 'x')",
    "set transaction read write; select lo_from_bytea(0, 'x')",
    "set transaction read write; select lo_create(0)",
    "set session characteristics as transaction read write; select lo_from_bytea(0, 'x')",
    "set default_transaction_read_only = off; select lo_from_bytea(0, 'x')",
    "set transaction read write; alter role current_user password 'changed-by-sql'",
    "alter role current_user set idle_in_transaction_session_timeout = 1",
    "set transaction read write; alter role current_user set work_mem = '2GB'",
]


@pytest.fixture(scope="module")
def gateway(start_gateway_for):
    """As the manifests configure it: the reader's role declared read-only."""
    return start_gateway_for(
        API_TOKENS=f"{ADMIN},{READER}:reader", READ_ONLY_ROLES="reader", MAX_ROWS="100000"
    )


def _large_objects(admin) -> int:
    admin.execute("select count(*) from pg_largeobject_metadata")
    return admin.fetchone()[0]


def _reader_defaults(admin) -> list:
    admin.execute(
        "select setconfig from pg_db_role_setting where setrole = 'reader'::regrole order by 1"
    )
    return admin.fetchall()


@pytest.mark.parametrize("sql", READER_WRITES)
def test_a_read_only_token_writes_nothing_by_any_route(gateway, admin, postgres, sql: str) -> None:
    objects, defaults = _large_objects(admin), _reader_defaults(admin)
    answers = [
        gateway.query(sql, token=READER),
        gateway.post("/transaction", {"statements": [{"query": sql}]}, token=READER),
        gateway.post("/query", {"query": sql}, token=READER, headers=dict(NDJSON)),
    ]
    for answer in answers:
        assert answer.status_code in {400, 403}, (sql, answer.status_code, answer.text)
    assert _large_objects(admin) == objects
    assert _reader_defaults(admin) == defaults
    psycopg2.connect(LOGINS.reader_dsn(postgres)).close()  # its password is unchanged


@pytest.mark.parametrize("token", [ADMIN, READER])
def test_temporary_files_stop_at_the_logins_limit(gateway, token: str) -> None:
    """A sort far larger than work_mem spills to disk; the login's temp_file_limit (set by
    roles.sql, superuser-only) ends it with 413 long before the disk fills."""
    response = gateway.query(
        "select count(*) from (select g from generate_series(1, 30000000) g order by g desc) s",
        token=token,
        timeout_ms=60000,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["sqlstate"] == "53400"


@pytest.mark.parametrize("token", [ADMIN, READER])
def test_no_login_can_lift_its_temp_file_limit(gateway, token: str) -> None:
    for sql in ("set temp_file_limit = -1", "set local temp_file_limit = '100GB'"):
        response = gateway.query(sql, token=token)
        assert response.status_code == 403, (sql, response.text)


def test_the_provisioning_bounds_each_logins_connections_files_and_objects(tmp_path) -> None:
    """roles.sql, on a server of its own (the session's lifts the connection limits): each
    login has a temp_file_limit and a connection limit PostgreSQL enforces, so no login
    takes every connection from the others; only the gateway's login creates large objects."""
    server = start_postgres(tmp_path)
    try:
        connection = psycopg2.connect(server.dsn(dbname=LOGINS.database))
        with connection.cursor() as cursor:
            cursor.execute(
                "select rolname, rolconnlimit, "
                "(select setconfig from pg_db_role_setting where setrole = r.oid) "
                "from pg_roles r where rolname = any(%s) order by 1",
                (list(LOGINS.names),),
            )
            logins = cursor.fetchall()
        assert [name for name, _, _ in logins] == sorted(LOGINS.names)
        for name, limit, settings in logins:
            assert limit > 0, name
            assert any(s.startswith("temp_file_limit=") for s in settings), (name, settings)
        with connection.cursor() as cursor:  # PostgreSQL 15 lets read-only transactions
            cursor.execute(  # create large objects: only the privilege stops the reader
                "select has_function_privilege('reader', 'lo_from_bytea(oid, bytea)', "
                "'execute'), has_function_privilege('gateway', 'lo_create(oid)', 'execute')"
            )
            assert cursor.fetchone() == (False, True)
        connection.close()
        _, reader_limit, _ = logins[[name for name, _, _ in logins].index("reader")]
        held = [psycopg2.connect(LOGINS.reader_dsn(server)) for _ in range(reader_limit)]
        with pytest.raises(psycopg2.OperationalError, match="too many connections"):
            psycopg2.connect(LOGINS.reader_dsn(server))
        for each in held:
            each.close()
    finally:
        server.stop()
