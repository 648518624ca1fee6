"""The statement guard: no transaction control, and no role/read-only changes when restricted."""

from __future__ import annotations

import pytest

from app.errors import ApiError
from app.sqlguard import check_statement, statement_words

ENDS_TRANSACTION = [
    "COMMIT",
    "commit;",
    "Commit Work",
    "END",
    "end transaction",
    "ABORT",
    "ROLLBACK",
    "rollback and chain",
    "BEGIN",
    "begin isolation level serializable",
    "START TRANSACTION",
    "start transaction read write",
    "COMMIT PREPARED 'x'",
    "select 1; commit",
    "insert into t values (1); COMMIT; select 1",
    "select 1;ROLLBACK",
    "select 'a';\n  /* note */ -- another\n commit",
    "select $$ x $$; commit",
    'select "quoted;"; commit',
    "select 1; begin; select 2",
    # An E'' string escapes a quote with a backslash: the literal ends after the
    # second quote, so PostgreSQL runs the COMMIT (checked against PostgreSQL 18).
    "SELECT E'\\''; COMMIT; --'",
]


@pytest.mark.parametrize("sql", ENDS_TRANSACTION)
@pytest.mark.parametrize("restricted", [False, True])
def test_transaction_control_is_refused(sql: str, restricted: bool) -> None:
    with pytest.raises(ApiError) as caught:
        check_statement(sql, restricted)
    assert caught.value.status == 400
    assert "/transaction" in caught.value.message


ALLOWED = [
    "select 1",
    "ROLLBACK TO SAVEPOINT s",
    "rollback to s",
    "ROLLBACK WORK TO SAVEPOINT s",
    "rollback transaction to savepoint s",
    "savepoint s; select 1; release savepoint s",
    "select 'commit'",
    "select 'x; commit'",
    "select 'it''s; commit'",
    "select E'x; commit'",
    "select $$; commit$$",
    "select $tag$ ; commit $tag$",
    "select $a$ $b$ ; commit $b$ ; commit $a$",
    'select "commit" from t',
    'select 1 as "x"";commit"',
    "select 1 -- ; commit",
    "select 1 -- ; commit\n",
    "select 1 /* ; commit */",
    "select 1 /* outer /* inner */ ; commit */",
    "create function f() returns void language plpgsql as $$ begin commit; end $$",
    "update t set end_date = now(), begin_date = now()",
    "select 1 as begin",
    "select 1;",
    ";;",
]


@pytest.mark.parametrize("sql", ALLOWED)
@pytest.mark.parametrize("restricted", [False, True])
def test_harmless_statements_pass(sql: str, restricted: bool) -> None:
    assert check_statement(sql, restricted) is None


CHANGES_RESTRICTION = [
    "SET ROLE postgres",
    "set role = postgres",
    "set local role postgres",
    "SET SESSION ROLE postgres",
    "SET/**/ROLE postgres",
    "RESET ROLE",
    "reset role;",
    "SET SESSION AUTHORIZATION postgres",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET SESSION AUTHORIZATION",
    "SET session_authorization = postgres",
    "select set_config('role', 'postgres', true)",
    "SELECT * FROM pg_catalog.set_config('transaction_read_only', 'off', true)",
    "SET TRANSACTION READ WRITE",
    "set transaction isolation level serializable, read write",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET default_transaction_read_only = off",
    "set local default_transaction_read_only to false",
    "SET LOCAL transaction_read_only TO off",
    "select 1; set role postgres",
    # Quoted identifiers name the same setting/function (checked against PostgreSQL 18:
    # both switch a SET LOCAL ROLE'd transaction back to the login role).
    'SET "role" TO postgres',
    "select \"set_config\"('role', 'postgres', true)",
]


@pytest.mark.parametrize("sql", CHANGES_RESTRICTION)
def test_restricted_requests_cannot_change_role_or_read_only(sql: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_statement(sql, restricted=True)
    assert caught.value.status == 403
    assert caught.value.sqlstate == "42501"


@pytest.mark.parametrize("sql", CHANGES_RESTRICTION)
def test_unrestricted_requests_may_change_role_or_read_only(sql: str) -> None:
    assert check_statement(sql, restricted=False) is None


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = public",
        "SET LOCAL work_mem = '64MB'",
        "select current_setting('role')",
        "select 'set role x'",
        "select 1 -- set role x",
        "show role",
        "select rolname from pg_roles",
    ],
)
def test_restricted_requests_may_set_other_things(sql: str) -> None:
    assert check_statement(sql, restricted=True) is None


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("select 1", [["SELECT"]]),
        ("select 'a b' as x; Commit", [["SELECT", "AS", "X"], ["COMMIT"]]),
        ("/* a /* b */ c */ select", [["SELECT"]]),
        ("select $q$ hidden $q$, $$ also $$", [["SELECT"]]),
        ('select "Hidden" from t', [["SELECT", "HIDDEN", "FROM", "T"]]),  # quoted names count
        ("select 1 -- hidden\n; end", [["SELECT"], ["END"]]),
        ("select 'unterminated", [["SELECT"]]),
        ("select $$ unterminated", [["SELECT"]]),
        ("select 1 /* unterminated", [["SELECT"]]),
        ("", []),
    ],
)
def test_statement_words(sql: str, words: list[list[str]]) -> None:
    assert statement_words(sql) == words


@pytest.mark.parametrize("restricted", [False, True])
@pytest.mark.parametrize(
    "sql",
    [
        "SET statement_timeout = 0",
        "set local statement_timeout to 0",
        'SET "statement_timeout" = 0',
        "select 1; RESET statement_timeout",
    ],
)
def test_nobody_may_lift_the_statement_timeout(sql: str, restricted: bool) -> None:
    with pytest.raises(ApiError) as caught:
        check_statement(sql, restricted=restricted)
    assert caught.value.status == 403


def test_only_short_statements_are_cached() -> None:
    from app.sqlguard import _cached_words, statement_words_cached

    _cached_words.cache_clear()
    assert statement_words_cached("select 1") == [["SELECT"]]
    long_sql = "select " + " + ".join(["1"] * 3000)
    assert statement_words_cached(long_sql)[0][0] == "SELECT"
    assert _cached_words.cache_info().currsize == 1
