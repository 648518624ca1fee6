"""/transaction commits all statements or none; the error names the failing statement."""

from __future__ import annotations

import pytest


@pytest.fixture
def ledger(admin) -> str:
    admin.execute("DROP TABLE IF EXISTS ledger")
    admin.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric NOT NULL)")
    admin.execute("ALTER TABLE ledger OWNER TO gateway")
    return "ledger"


def test_all_statements_commit_together(gateway, ledger) -> None:
    response = gateway.post(
        "/transaction",
        {
            "statements": [
                {"query": "insert into ledger values (%s, %s)", "params": [1, 10]},
                {"query": "insert into ledger values (%(id)s, %(a)s)", "params": {"id": 2, "a": 5}},
                {"query": "select sum(amount) as total from ledger"},
            ]
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "results": [{"result": "OK"}, {"result": "OK"}, {"result": [{"total": "15"}]}]
    }


def test_failure_rolls_back_everything_and_names_the_statement(gateway, ledger, admin) -> None:
    response = gateway.post(
        "/transaction",
        {
            "statements": [
                {"query": "insert into ledger values (1, 10)"},
                {"query": "insert into ledger values (2, 20)"},
                {"query": "insert into ledger values (1, 30)"},
            ]
        },
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["statement"] == 2
    assert error["sqlstate"] == "23505"
    admin.execute("select count(*) from ledger")
    assert admin.fetchone() == (0,)


def test_syntax_error_names_statement_and_position(gateway, ledger) -> None:
    response = gateway.post(
        "/transaction", {"statements": [{"query": "select 1"}, {"query": "select * fron ledger"}]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["statement"] == 1
    assert error["sqlstate"] == "42601"
    assert error["position"] == len("select * ") + 1


def test_read_only_transaction_refuses_writes(gateway, ledger, admin) -> None:
    response = gateway.post(
        "/transaction",
        {"statements": [{"query": "insert into ledger values (1, 1)"}], "read_only": True},
    )
    assert response.status_code == 403
    assert response.json()["error"]["sqlstate"] == "25006"
    admin.execute("select count(*) from ledger")
    assert admin.fetchone() == (0,)


def test_multi_statement_query_is_one_transaction(gateway, ledger, admin) -> None:
    ok = gateway.query("insert into ledger values (1, 1); select count(*) as n from ledger")
    assert ok.json() == {"result": [{"n": 1}]}
    failed = gateway.query("insert into ledger values (2, 2); insert into ledger values (1, 1)")
    assert failed.status_code == 409
    admin.execute("select array_agg(id order by id) from ledger")
    assert admin.fetchone() == ([1],)


def test_transaction_control_inside_sql_is_refused(gateway, ledger, admin) -> None:
    response = gateway.query("insert into ledger values (1, 1); commit; select 1")
    assert response.status_code == 400
    admin.execute("select count(*) from ledger")
    assert admin.fetchone() == (0,)
