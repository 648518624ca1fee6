"""The SQLSTATE -> HTTP table and the error body (design: "Errors")."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg2
import pytest

from app.errors import (
    GENERIC_MESSAGE,
    RETRY_AFTER_SECONDS,
    ApiError,
    from_db_error,
    status_for_sqlstate,
    unavailable,
)
from app.responses import error_document
from tests.unit.gateway.conftest import ERROR_KEYS

# Every row of the design's table that a SQLSTATE decides, plus the neighbours the code lists.
SQLSTATE_TABLE = [
    ("42601", 400, "syntax_error"),
    ("42P01", 400, "undefined_table"),
    ("42703", 400, "undefined_column"),
    ("22012", 400, "division_by_zero"),
    ("22P02", 400, "invalid_text_representation"),
    ("23505", 409, "unique_violation"),
    ("23503", 409, "foreign_key_violation"),
    ("23502", 409, "not_null_violation"),
    ("42501", 403, "insufficient_privilege"),
    ("25006", 403, "read_only_sql_transaction"),
    ("57014", 504, "query_canceled"),
    ("08006", 503, "connection_failure"),
    ("08001", 503, "sqlclient_unable_to_establish_sqlconnection"),
    ("57P01", 503, "admin_shutdown"),
    ("57P03", 503, "cannot_connect_now"),
    ("53300", 503, "too_many_connections"),
    ("40001", 409, "serialization_failure"),
    ("40P01", 409, "deadlock_detected"),
    ("XX000", 500, "internal_error"),
    ("58030", 500, "io_error"),
    ("P0001", 400, "raise_exception"),
]


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [pytest.param(code, status, id=name) for code, status, name in SQLSTATE_TABLE],
)
def test_status_for_sqlstate(sqlstate: str, status: int) -> None:
    assert status_for_sqlstate(sqlstate) == status


def fake_db_error(
    pgcode: str | None,
    message: str = "boom",
    detail: str | None = None,
    hint: str | None = None,
    position: str | None = None,
) -> psycopg2.Error:
    """A psycopg2 error carrying a SQLSTATE and diagnostics, as if PostgreSQL had sent it."""
    diag = SimpleNamespace(
        message_primary=message,
        message_detail=detail,
        message_hint=hint,
        statement_position=position,
    )
    cls = type("FakeDbError", (psycopg2.Error,), {"pgcode": pgcode, "diag": diag})
    return cls(f"ERROR:  {message}")


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [pytest.param(code, status, id=name) for code, status, name in SQLSTATE_TABLE],
)
def test_from_db_error_status_and_retry_after(sqlstate: str, status: int) -> None:
    error = from_db_error(fake_db_error(sqlstate, "something failed"))
    assert error.status == status
    if status == 503:
        assert error.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    else:
        assert "Retry-After" not in error.headers
    if status == 500:
        assert error.message == GENERIC_MESSAGE, "details of unexpected errors stay in the log"


def test_from_db_error_keeps_postgresql_words() -> None:
    error = from_db_error(
        fake_db_error(
            "23505",
            'duplicate key value violates unique constraint "account_pkey"',
            detail="Key (id_user)=(1) already exists.",
            hint="Pick another id.",
            position="15",
        )
    )
    assert error_document(error) == {
        "error": {
            "message": 'duplicate key value violates unique constraint "account_pkey"',
            "sqlstate": "23505",
            "detail": "Key (id_user)=(1) already exists.",
            "hint": "Pick another id.",
            "position": 15,
        }
    }


def test_from_db_error_500_hides_the_message() -> None:
    error = from_db_error(fake_db_error("XX000", "could not read block 7 of /var/lib/secret"))
    assert error_document(error)["error"]["message"] == GENERIC_MESSAGE
    assert error_document(error)["error"]["sqlstate"] == "XX000"
    assert "secret" not in str(error_document(error))


def test_body_has_exactly_the_contract_keys() -> None:
    body = error_document(ApiError(400, "bad"))
    assert body == {
        "error": {
            "message": "bad",
            "sqlstate": None,
            "detail": None,
            "hint": None,
            "position": None,
        }
    }
    assert set(body["error"]) == ERROR_KEYS


def test_at_statement_adds_the_index_and_leaves_the_original_alone() -> None:
    original = ApiError(409, "dup", sqlstate="23505", position=3)
    indexed = original.at_statement(2)
    assert error_document(indexed)["error"]["statement"] == 2
    assert set(error_document(indexed)["error"]) == ERROR_KEYS | {"statement"}
    assert indexed.status == 409 and indexed.sqlstate == "23505" and indexed.position == 3
    assert "statement" not in error_document(original)["error"]


def test_at_statement_zero_is_kept() -> None:
    assert error_document(ApiError(400, "x").at_statement(0))["error"]["statement"] == 0


def test_unavailable_is_503_with_retry_after() -> None:
    error = unavailable("database unavailable")
    assert error.status == 503
    assert error.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert error_document(error)["error"]["message"] == "database unavailable"
