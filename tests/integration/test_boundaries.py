"""The boundaries PostgreSQL owns: the reader login writes nothing by any route, READ_ONLY
cannot be left, and `timeout_ms` holds whatever the SQL does to statement_timeout.

Each list holds the escapes that once worked (issue: a carriage return after `--` let a
reader token write as `gateway`; `reset all` lifted the timeout) and their relatives: the
lexer differences (carriage returns, U& identifiers, dollar quotes after non-ASCII letters,
standard_conforming_strings, E'' continuation lines), role and session changes, functions.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import LOGINS

ADMIN, READER = "boundary-admin", "boundary-reader"

WRITES = [
    "insert into ledger values (1)",
    "--x\rset role gateway;\ninsert into ledger values (2)",
    "--x\rreset role;\ninsert into ledger values (3)",
    'set role "gateway"; insert into ledger values (4)',
    "set session authorization gateway; insert into ledger values (5)",
    "select set_config('role', 'gateway', false); insert into ledger values (6)",
    "set transaction read write; insert into ledger values (7)",
    "set default_transaction_read_only = off; insert into ledger values (8)",
    "do $$ begin execute 'insert into ledger values (9)'; end $$",
    "create function w() returns void language sql as 'insert into ledger values (10)'",
    "with x as (insert into ledger values (11) returning *) select * from x",
    "update ledger set n = n + 100",
    "delete from ledger",
    "truncate ledger",
    "copy ledger from program 'true'",
    "select 1; commit; insert into ledger values (12)",
    "select E'x'\n'\\' ; '; commit; insert into ledger values (13); --'",
    "select é$$ as x; commit; insert into ledger values (14); select 1 as y$$",
    "set standard_conforming_strings = off; "
    "select '\\'; commit; insert into ledger values (15); --'",
    'select U&"\\0061" from (select 1 as a) s; commit; insert into ledger values (16)',
    "create temp table shadow as select * from ledger",
    "alter table ledger add column x int",
    "grant insert on ledger to reader",
    "create table elsewhere (n int)",
    "select pg_catalog.lo_import('/etc/passwd')",
    # What left READ_ONLY on the old code: a read-write switch or a COMMIT the text guard
    # could not see behind a carriage return.
    "--x\rset transaction read write;\ninsert into ledger values (17)",
    "--x\rcommit;\ninsert into ledger values (18)",
    "--x\rset session characteristics as transaction read write;\ncommit;\n"
    "insert into ledger values (19)",
]


@pytest.fixture(scope="module")
def ledger_table(postgres) -> None:
    """Owned by `gateway`, as the gateway's tables are; the reader may select."""
    postgres.execute(
        "create table if not exists ledger (n int)",
        "grant select on ledger to reader",
        dsn=LOGINS.gateway_dsn(postgres),
    )


@pytest.fixture(scope="module")
def guarded(start_gateway_for, ledger_table):
    return start_gateway_for(API_TOKENS=f"{ADMIN},{READER}:reader", READ_ONLY_ROLES="reader")


def _ledger(admin) -> list[tuple]:
    admin.execute("select n from ledger order by n")
    return admin.fetchall()


@pytest.fixture
def ledger(admin):
    admin.execute("truncate ledger")
    admin.execute("insert into ledger values (0)")
    yield
    admin.execute("drop function if exists w()")
    admin.execute("drop table if exists elsewhere")


@pytest.mark.usefixtures("ledger")
@pytest.mark.parametrize("sql", WRITES)
def test_the_reader_token_changes_nothing_by_any_route(guarded, admin, sql: str) -> None:
    as_query = guarded.query(sql, token=READER)
    as_transaction = guarded.post(
        "/transaction", {"statements": [{"query": part} for part in sql.split(";")]}, token=READER
    )
    as_stream = guarded.post(
        "/query", {"query": sql}, token=READER, headers={"Accept": "application/x-ndjson"}
    )
    for response in (as_query, as_transaction):
        assert response.status_code in {400, 403}, (sql, response.text)
    assert as_stream.status_code != 500, as_stream.text
    assert _ledger(admin) == [(0,)], sql
    admin.execute("select count(*) from pg_proc where proname = 'w'")
    assert admin.fetchone() == (0,)


@pytest.fixture(scope="module")
def read_only(start_gateway_for, ledger_table):
    return start_gateway_for(READ_ONLY="true")


@pytest.mark.usefixtures("ledger")
@pytest.mark.parametrize("sql", WRITES)
def test_read_only_mode_cannot_be_left(read_only, admin, sql: str) -> None:
    """Here the login (`gateway`) may write: only the read-only transaction stops it."""
    response = read_only.query(sql)
    assert response.status_code in {400, 403}, (sql, response.text)
    transaction = read_only.post(
        "/transaction", {"statements": [{"query": sql}], "read_only": False}
    )
    assert transaction.status_code in {400, 403}, (sql, transaction.text)
    assert _ledger(admin) == [(0,)], sql


def test_read_only_mode_still_reads_and_answers_403(read_only) -> None:
    assert read_only.query("select count(*) as n from ledger").status_code == 200
    write = read_only.query("insert into ledger values (1)")
    assert write.status_code == 403
    assert write.json()["error"]["sqlstate"] == "25006"


def test_the_reader_reads(guarded, admin) -> None:
    admin.execute("truncate ledger")
    admin.execute("insert into ledger values (7)")
    read = guarded.query("select n, current_user as who from ledger", token=READER)
    assert read.json() == {"result": [{"n": 7, "who": "reader"}]}
    assert guarded.query("select current_user as who", token=ADMIN).json() == {
        "result": [{"who": "gateway"}]
    }


ESCAPES = [
    "select pg_sleep(3)",
    "reset all; select pg_sleep(3)",
    "set session statement_timeout = 0; select pg_sleep(3)",
    "set statement_timeout = 0; select pg_sleep(3)",
    "select set_config('statement_timeout', '0', true); select pg_sleep(3)",
    "select set_config('statement_timeout', '0', false), pg_sleep(3)",
    "update pg_settings set setting = '0' where name = 'statement_timeout'; select pg_sleep(3)",
    "set session characteristics as transaction read write; reset all; select pg_sleep(3)",
    "do $$ begin perform set_config('statement_timeout', '0', true); perform pg_sleep(3); end $$",
    # CPU-bound without temporary files (a FROM generate_series would spill, and meet the
    # reader's temp_file_limit first).
    "select count(*) from (select generate_series(1, 1000000000)) as s",
]


@pytest.mark.parametrize("sql", ESCAPES)
@pytest.mark.parametrize("token", [ADMIN, READER])
def test_the_deadline_holds_whatever_the_sql_does(guarded, sql: str, token: str) -> None:
    started = time.monotonic()
    response = guarded.query(sql, token=token, timeout_ms=1000)
    elapsed = time.monotonic() - started
    # The reader's transactions are read-only (READ_ONLY_ROLES): an UPDATE of pg_settings
    # is refused there before it runs.
    refused_as_a_write = response.status_code == 403 and token == READER and "update" in sql
    assert response.status_code == 504 or refused_as_a_write, response.text
    assert elapsed < 2.5, elapsed  # 1 s deadline, the cancel, and the answer
    assert guarded.query("select 1 as ok", token=token).json() == {"result": [{"ok": 1}]}


def test_the_deadline_holds_in_read_only_mode(read_only) -> None:
    response = read_only.query("reset all; select pg_sleep(3)", timeout_ms=1000)
    assert response.status_code == 504, response.text


def test_a_statement_the_server_will_not_stop_is_given_up_on(guarded) -> None:
    """PostgreSQL's lexer does not answer a cancel: such input is refused before it is
    sent, and were it sent the gateway would still answer 504 and drop the connection."""
    started = time.monotonic()
    response = guarded.query("select 1 " + "/*" * 40_000 + " " + "*/" * 40_000, token=ADMIN)
    assert response.status_code == 400
    assert "lexer" in response.json()["error"]["message"]
    assert time.monotonic() - started < 1.0
