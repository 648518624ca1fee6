"""PostgreSQL going away and coming back; SIGTERM draining."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.integration.conftest import start_postgres


@pytest.fixture
def own_postgres(tmp_path):
    server = start_postgres(tmp_path)
    yield server
    server.stop()


def test_database_down_is_503_and_recovery_needs_no_500(own_postgres, start_gateway_for) -> None:
    gateway = start_gateway_for(server=own_postgres, WORKERS="2", POOL_MIN="2")
    for _ in range(4):  # put live connections in both workers' pools
        assert gateway.query("select 1").status_code == 200

    own_postgres.stop()
    ready = gateway.get("/readyz")
    assert ready.status_code == 503
    statuses = set()
    for _ in range(6):
        response = gateway.query("select 1")
        statuses.add(response.status_code)
        assert response.headers["Content-Type"] == "application/json"
        if response.status_code == 503:
            assert response.headers["Retry-After"]
    assert statuses == {503}

    own_postgres.start()
    for _ in range(6):  # every worker, every stale pooled connection: replaced, not surfaced
        response = gateway.query("select 1 as one")
        assert response.status_code == 200, response.text
    assert gateway.get("/readyz").status_code == 200


def test_sigterm_finishes_inflight_query_and_turns_unready(start_gateway_for) -> None:
    gateway = start_gateway_for(WORKERS="2")
    outcome: dict[str, object] = {}

    def slow_query() -> None:
        outcome["response"] = gateway.query("select pg_sleep(1) is null as slept")

    worker = threading.Thread(target=slow_query)
    worker.start()
    time.sleep(0.3)
    gateway.process.send_signal(signal.SIGTERM)
    readiness = []
    while worker.is_alive():
        try:
            readiness.append(gateway.get("/readyz").status_code)
        except OSError:
            readiness.append(None)
        time.sleep(0.05)
    worker.join()
    response = outcome["response"]
    assert response.status_code == 200
    assert response.json() == {"result": [{"slept": False}]}
    assert 503 in readiness
    assert 200 not in readiness
    assert gateway.process.wait(timeout=30) == 0
