"""A request's backend ends with the request, its deadline bounds the whole of it, and a
stalled PostgreSQL stalls no worker.

Measured at 017843a: PL/pgSQL that catches `query_canceled` got its 504 after the 2 s grace
and its connection dropped, and the backend ran on for ever (120 reader requests left 91
such backends: PostgreSQL out of connections; one holding an ACCESS EXCLUSIVE lock made
every request on that table 504); with PostgreSQL stopped (SIGSTOP), psycopg2's blocking
cancel froze the gevent worker: /healthz timed out and the 504 for a 1 s deadline came only
when PostgreSQL resumed; `/transaction`'s deadline was per statement, and a stream read
slowly kept its transaction open past every limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.integration.conftest import LOGINS, start_postgres

ADMIN, READER = "backends-admin", "backends-reader"
POOL_MAX = 3
# Swallows every cancel: only the end of its backend stops it.
CATCHES_CANCEL = (
    "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(1000); "
    "EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$"
)
GRACE_S = 2.0  # app.wait.CANCEL_GRACE_S
SETTLE_S = 15  # pg_terminate_backend's wait (5 s) and the reconnect, with room


# The backends of this module's gateway, among those of every other gateway of the session.
APPLICATION = "pg-gateway-backends-test"


@pytest.fixture(scope="module")
def gateway(start_gateway_for, postgres):
    return start_gateway_for(
        database_url=f"{LOGINS.gateway_dsn(postgres)}?application_name={APPLICATION}",
        API_TOKENS=f"{ADMIN},{READER}:reader",
        READ_ONLY_ROLES="reader",
        WORKERS="1",
        POOL_MAX=str(POOL_MAX),
        POOL_TIMEOUT_MS="20000",
    )


LOGIN = {ADMIN: "gateway", READER: "reader"}


def _backends(admin, login: str, pattern: str = "%") -> int:
    """The gateway's backends of `login` whose current statement matches `pattern`."""
    admin.execute(
        "select count(*) from pg_stat_activity where usename = %s "
        "and application_name = %s and query like %s",
        (login, APPLICATION, pattern),
    )
    return admin.fetchone()[0]


def _terminated(gateway) -> float:
    text = requests.get(gateway.ops_url + "/metrics", timeout=5).text
    found = re.findall(r"^gateway_backends_terminated_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(value) for value in found)


def _settled(check, within_s: float = SETTLE_S) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("token", [ADMIN, READER])
def test_a_backend_that_swallows_the_cancel_ends_with_its_request(gateway, admin, token) -> None:
    before = _terminated(gateway)
    peak = 0
    for _round in range(2):  # twice the pool: the first round's backends must be gone
        with ThreadPoolExecutor(POOL_MAX) as pool:
            started = time.monotonic()
            futures = [
                pool.submit(gateway.query, CATCHES_CANCEL, token=token, timeout_ms=300)
                for _ in range(POOL_MAX)
            ]
            while not all(future.done() for future in futures):
                peak = max(peak, _backends(admin, LOGIN[token]))
                time.sleep(0.05)
        for future in futures:
            assert future.result().status_code == 504, future.result().text
        assert time.monotonic() - started < 0.3 + GRACE_S + 2
    sleeping = "%pg_sleep(1000)%"
    assert _settled(lambda: _backends(admin, LOGIN[token], sleeping) == 0), "a backend outlived it"
    print(
        f"\nbackends: {2 * POOL_MAX} cancel-swallowing requests of {LOGIN[token]}, none left "
        f"{time.monotonic() - started:.1f} s after the last round began; at most {peak} at once"
    )
    # Each slot holds its connection, and for a moment the one that ends its old backend.
    assert peak <= 2 * POOL_MAX, peak
    assert _settled(lambda: _terminated(gateway) - before >= 2 * POOL_MAX)
    assert gateway.query("select 1 as ok", token=token).json() == {"result": [{"ok": 1}]}


def test_a_lock_held_by_such_a_backend_is_released(gateway, admin) -> None:
    admin.execute("drop table if exists locked; create table locked (n int)")
    admin.execute("alter table locked owner to gateway")
    held = gateway.query(
        f"lock table locked in access exclusive mode; {CATCHES_CANCEL}", token=ADMIN, timeout_ms=300
    )
    assert held.status_code == 504
    after = gateway.query(
        "select count(*) as n from locked", token=ADMIN, timeout_ms=SETTLE_S * 1000
    )
    assert after.status_code == 200, after.text


def test_the_deadline_bounds_a_whole_transaction(gateway) -> None:
    statements = [{"query": "select pg_sleep(0.4)"}] * 5
    started = time.monotonic()
    response = gateway.post(
        "/transaction", {"statements": statements, "timeout_ms": 1000}, token=ADMIN
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert elapsed < 1 + GRACE_S, elapsed


def test_a_stream_ends_at_its_cap_and_commits_nothing(start_gateway_for, admin) -> None:
    gateway = start_gateway_for(STREAM_MAX_S="2", WORKERS="1")
    admin.execute("drop table if exists streamed; create table streamed (n int)")
    admin.execute("alter table streamed owner to gateway")
    sql = (
        "insert into streamed values (1); "
        "select g, repeat('x', 1000) as pad from generate_series(1, 3000000) g"
    )
    stream = gateway.post(
        "/query", {"query": sql}, headers={"Accept": "application/x-ndjson"}, stream=True
    )
    with stream as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        next(lines)
        time.sleep(3)  # a slow reader: the cap passes while the server waits on it
        last = None
        for line in lines:
            if line:
                last = line
    assert last is not None and b"STREAM_MAX_S" in last, last
    admin.execute("select count(*) from streamed")
    assert admin.fetchone()[0] == 0


@pytest.fixture
def stoppable_postgres(tmp_path):
    server = start_postgres(tmp_path)
    yield server
    _signal_server(server, signal.SIGCONT)
    server.stop()


def _signal_server(server, signum: int) -> None:
    """The postmaster and every backend, as a frozen VM or a storage stall would stop them.
    The postmaster first, and its children listed after: a backend it forks meanwhile (the
    pool filling up to POOL_MIN) would otherwise run on and answer (seen once: 200, not 504)."""
    postmaster = psutil.Process(server.pid)
    os.kill(postmaster.pid, signum)
    for process in postmaster.children(recursive=True):
        with contextlib.suppress(ProcessLookupError):  # a backend that ended needs no signal
            os.kill(process.pid, signum)


def test_a_stalled_postgres_stalls_no_worker(stoppable_postgres, start_gateway_for) -> None:
    gateway = start_gateway_for(server=stoppable_postgres, WORKERS="1", POOL_MIN="2")
    assert gateway.query("select 1").status_code == 200
    _signal_server(stoppable_postgres, signal.SIGSTOP)
    outcome: dict[str, object] = {}

    def stalled_query() -> None:
        started = time.monotonic()
        outcome["status"] = gateway.query("select 1", timeout_ms=1000).status_code
        outcome["seconds"] = time.monotonic() - started

    query = threading.Thread(target=stalled_query)
    query.start()
    probes = []
    for _ in range(15):  # as the kubelet probes: a new connection, a short timeout
        started = time.monotonic()
        try:
            status = requests.get(gateway.ops_url + "/healthz", timeout=1).status_code
        except requests.RequestException as error:
            status = type(error).__name__
        probes.append((status, round(time.monotonic() - started, 2)))
        time.sleep(0.2)
    query.join(timeout=10)
    assert not query.is_alive(), "the request waited for PostgreSQL to resume"
    assert outcome["status"] == 504
    assert outcome["seconds"] < 1 + GRACE_S + 1, outcome
    assert all(status == 200 for status, _ in probes), probes
    slowest = max(seconds for _, seconds in probes)
    print(
        f"\nbackends: PostgreSQL stopped: 504 after {outcome['seconds']:.2f} s (timeout_ms 1000), "
        f"{len(probes)} /healthz probes all 200, the slowest in {slowest:.2f} s"
    )
