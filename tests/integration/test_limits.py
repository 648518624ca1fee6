"""Row, byte, body and time limits answer 413/504 and leave the server usable."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def small_limits(start_gateway_for):
    return start_gateway_for(
        MAX_ROWS="100", MAX_RESULT_BYTES="4096", MAX_BODY_BYTES="2048", POOL_MAX="1"
    )


def test_max_rows_from_request_is_413(gateway) -> None:
    response = gateway.query("select generate_series(1, 11) as n", max_rows=10)
    assert response.status_code == 413
    assert "more than 10 rows" in response.json()["error"]["message"]
    exact = gateway.query("select generate_series(1, 10) as n", max_rows=10)
    assert exact.status_code == 200
    assert len(exact.json()["result"]) == 10


def test_request_max_rows_is_capped_by_server(small_limits) -> None:
    response = small_limits.query("select generate_series(1, 101) as n", max_rows=1000)
    assert response.status_code == 413


def test_max_result_bytes_is_413(small_limits) -> None:
    response = small_limits.query("select repeat('x', 5000) as big")
    assert response.status_code == 413
    assert "MAX_RESULT_BYTES" in response.json()["error"]["message"]


def test_oversized_body_is_413(small_limits) -> None:
    response = small_limits.query("select '" + "x" * 4000 + "'")
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"


def test_statement_timeout_is_504_and_connection_stays_usable(small_limits) -> None:
    # POOL_MAX=1: the next query must reuse the very connection whose statement was cancelled.
    response = small_limits.query("select pg_sleep(5)", timeout_ms=200)
    assert response.status_code == 504
    assert response.json()["error"]["sqlstate"] == "57014"
    after = small_limits.query("select 1 as one")
    assert after.status_code == 200
    assert after.json() == {"result": [{"one": 1}]}


def test_timeout_is_capped_by_server_maximum(start_gateway_for) -> None:
    capped = start_gateway_for(STATEMENT_TIMEOUT_MS="100", MAX_STATEMENT_TIMEOUT_MS="300")
    response = capped.query("select pg_sleep(2)", timeout_ms=60000)
    assert response.status_code == 504
