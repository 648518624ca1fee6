"""Tokens, role-mapped tokens and READ_ONLY mode."""

from __future__ import annotations

import pytest

ADMIN_TOKEN = "admin-token-for-tests"
READER_TOKEN = "reader-token-for-tests"


@pytest.fixture(scope="module")
def secured(start_gateway_for):
    return start_gateway_for(
        API_TOKENS=f"{ADMIN_TOKEN},{READER_TOKEN}:reader", READ_ONLY_ROLES="reader"
    )


@pytest.fixture
def notes(admin) -> None:
    admin.execute("DROP TABLE IF EXISTS notes")
    admin.execute("CREATE TABLE notes (body text)")
    admin.execute("ALTER TABLE notes OWNER TO gateway")
    admin.execute("GRANT SELECT ON notes TO reader")


def test_missing_or_wrong_token_is_401(secured) -> None:
    for token in (None, "wrong"):
        response = secured.query("select 1", token=token)
        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers
    transaction = secured.post("/transaction", {"statements": [{"query": "select 1"}]})
    assert transaction.status_code == 401


def test_operations_endpoints_need_no_token(secured) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


@pytest.mark.usefixtures("notes")
def test_admin_token_writes_and_reader_token_reads_only(secured, admin) -> None:
    assert secured.query("insert into notes values ('a')", token=ADMIN_TOKEN).status_code == 200
    read = secured.query("select body, current_user as who from notes", token=READER_TOKEN)
    assert read.json() == {"result": [{"body": "a", "who": "reader"}]}
    write = secured.query("insert into notes values ('b')", token=READER_TOKEN)
    assert write.status_code == 403
    # reader's transactions are read-only by default (roles.sql), and it may not insert.
    assert write.json()["error"]["sqlstate"] in {"25006", "42501"}
    admin.execute("select count(*) from notes")
    assert admin.fetchone() == (1,)


@pytest.mark.usefixtures("notes")
def test_reader_token_cannot_reset_its_role(secured) -> None:
    for sql in (
        "reset role; insert into notes values ('x')",
        "select set_config('role', 'gateway', true)",
    ):
        response = secured.query(sql, token=READER_TOKEN)
        assert response.status_code == 403, sql


@pytest.mark.usefixtures("notes")
def test_read_only_mode_is_403_with_25006(start_gateway_for, admin) -> None:
    read_only = start_gateway_for(READ_ONLY="true")
    assert read_only.query("select count(*) from notes").status_code == 200
    response = read_only.query("insert into notes values ('x')")
    assert response.status_code == 403
    assert response.json()["error"]["sqlstate"] == "25006"
    escape = read_only.query("set transaction read write; insert into notes values ('x')")
    assert escape.status_code == 400  # 25001: read-write must be set before any query
    admin.execute("select count(*) from notes")
    assert admin.fetchone() == (0,)
