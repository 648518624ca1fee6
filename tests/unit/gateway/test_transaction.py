"""How a statement's rows are read, and errors in the client's own terms (pure logic)."""

from __future__ import annotations

import pytest

from app.errors import ApiError
from app.sqlscan import Scanner
from app.transaction import Plan, _in_client_terms, _Sent, plan


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select 1", Plan.CURSOR),
        ("(select 1) union (select 2)", Plan.CURSOR),
        ("values (1)", Plan.CURSOR),
        ("table t", Plan.CURSOR),
        ("with a as (select 1) select generate_series(1, 10)", Plan.CURSOR),
        ("select 1 as x into t", Plan.DIRECT),
        ("insert into t values (1)", Plan.DIRECT),
        ("insert into t values (1) returning *", Plan.DIRECT),
        ("with d as (delete from t returning *) select * from d", Plan.DIRECT),
        ("with d as (delete from t returning *) insert into u select * from d", Plan.DIRECT),
        ("with x as (select 1) insert into t select * from x returning *", Plan.DIRECT),
        ("show work_mem", Plan.DIRECT),
        ("create table t (n int)", Plan.DIRECT),
    ],
)
def test_plan(sql: str, expected: Plan) -> None:
    """Only a query a cursor may hold goes behind one; everything else runs as written."""
    (piece,) = Scanner(sql).pieces()
    assert plan(piece) is expected


def test_positions_are_in_the_clients_text_and_none_in_the_gateways_own() -> None:
    text = "select 1; selec 2"
    piece = Scanner(text).pieces()[1]
    prefix = "BEGIN; SET LOCAL statement_timeout = 5000;\nDECLARE c NO SCROLL CURSOR FOR "
    sent = _Sent(piece, prefix, "\n; FETCH 2 FROM pgw_ab_1")
    in_body = _in_client_terms(ApiError(400, "syntax error", position=len(prefix) + 1), sent)
    assert text[in_body.position - 1 :].startswith("selec 2")
    in_prefix = _in_client_terms(ApiError(400, "x", position=3), sent)
    assert in_prefix.position is None


def test_the_gateways_sql_is_cut_out_of_messages() -> None:
    (piece,) = Scanner("select 'x").pieces()
    sent = _Sent(piece, "DECLARE c CURSOR FOR ", "\n; FETCH 2 FROM pgw_ab_1")
    error = ApiError(400, 'unterminated quoted string at or near "\'x\n; FETCH 2 FROM pgw_ab_1"')
    assert _in_client_terms(error, sent).message == 'unterminated quoted string at or near "\'x"'
    other = ApiError(400, "cursor pgw_ab_1 does not exist")
    assert "pgw_" not in _in_client_terms(other, sent).message
