"""The statement guard: no transaction control, no NUL, nothing PostgreSQL's lexer chokes on.

The guard is not the security boundary (PostgreSQL's logins and read-only transactions
are), so it must never refuse what PostgreSQL accepts inside a transaction.
"""

from __future__ import annotations

import pytest

from app.errors import ApiError
from app.sqlguard import MAX_LEXER_COST, MAX_STATEMENTS, check

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
    # Lexer differences that once let a COMMIT (or SET ROLE and a write) through: a carriage
    # return ends a -- comment; a string spelled on two lines keeps the first spelling's
    # E'' escapes; an E'' after a number is still one; a routine body ends at its END.
    "--x\rCOMMIT",
    "select E'x'\n'\\' ; '; commit; insert into t values (1); --'",
    "select 1E'\\' x '; commit; --'",
    "create function f() returns int language sql begin atomic select 1; end; commit",
    "create function f(begin int) returns int language sql return begin; commit; end",
    "select 1 /* a /* nested */ b */; commit",
    "prepare transaction 'x'",
    # é$$ is one identifier (letters from U+0080 up, then $): no dollar quote opens there.
    "select é$$ as x; commit; select 1 as y$$",
]


@pytest.mark.parametrize("sql", ENDS_TRANSACTION)
def test_transaction_control_is_refused(sql: str) -> None:
    with pytest.raises(ApiError) as caught:
        check(sql)
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
    # PostgreSQL accepts these in a transaction, so the guard must too.
    "create function f() returns int language sql begin atomic select 1; end",
    "create procedure p() language sql begin atomic select case when true then 1 end; end",
    "create rule r as on insert to t do also (insert into u values (1); insert into u values (2))",
    "select 1 as x into t",
    "select 1 as é$$",  # an identifier may hold dollar signs
    "select U&'d\\0061t' UESCAPE '!'",
    "prepare transaction_names as select 1",
    "savepoint s; select 1; rollback to s; release s",
    "update t set end_date = now(), begin_date = now()",
    "select 1 as begin",
    "select 1;",
    ";;",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_statements_postgresql_accepts_in_a_transaction_pass(sql: str) -> None:
    check(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "reset all; select pg_sleep(3)",
        "set session statement_timeout = 0",
        "select set_config('statement_timeout', '0', true)",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SET TRANSACTION READ WRITE",
        "set standard_conforming_strings = off",
    ],
)
def test_settings_are_postgresqls_to_refuse_and_the_gateways_to_undo(sql: str) -> None:
    """The deadline is the gateway's and roles are logins: such SQL is let through."""
    check(sql)


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(ApiError) as caught:
        check("select 1\x00; select 2")
    assert caught.value.status == 400
    assert "NUL" in caught.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "select 1 " + "/*" * 4000 + " " + "*/" * 4000,  # PostgreSQL: about 50 ms, uncancellable
        "select 1 " + "+" * 4000 + " 1",
    ],
)
def test_text_that_makes_the_lexer_back_up_quadratically_is_refused(sql: str) -> None:
    with pytest.raises(ApiError) as caught:
        check(sql)
    assert caught.value.status == 400
    assert "lexer" in caught.value.message


def test_modest_nesting_and_operators_pass() -> None:
    check("select 1 /* a /* b /* c */ */ */ + 2 <> 3 ~* 'x' -- ====================\n")
    check("select 1 " + "/*" * 100 + " " + "*/" * 100)
    assert MAX_LEXER_COST > 100 * 200


def test_too_many_statements_are_refused() -> None:
    check("select 1;" * MAX_STATEMENTS)
    with pytest.raises(ApiError, match="more than"):
        check("select 1;" * (MAX_STATEMENTS + 1))
