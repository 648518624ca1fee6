"""One request raises a worker's memory by at most MAX_RESULT_BYTES x 2 + 50 MiB, and one
PostgreSQL backend's by at most what the StatefulSet lets a process map.

Measured on older code: wide rows took a worker from 148 MB to 1,047 MB before the 413,
`with a as (select 1) select generate_series(1, 100000000)` peaked at 1.0-2.2 GB, and NDJSON
with 100 kB rows at 955 MB. At 017843a a value was still read whole before any byte budget
applied: `select repeat('x', 500000000)` took a worker to 2.4 GiB before its 413 (under the
Deployment's 512 MiB limit the kernel killed the worker and the other requests on it), and
EXECUTE of a prepared statement and FETCH ALL from a client's cursor bypassed the budget;
one backend reached 1.7-2.4 GB (string_agg, sorts after `set local work_mem = '2GB'`), and
under the StatefulSet's 1 GiB limit the kernel's kill restarted all of PostgreSQL. Rows are
read in batches bounded by bytes as well as rows, and libpq is given up on once it holds
more of a result than the budget allows (app.wait). The RSS of the one worker is sampled
every 20 ms during each request; the figures are printed for the record.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import psycopg2
import pytest

from harness.local.deployed import deployed_server, local_server
from harness.local.postgres import LocalPostgres
from harness.local.provision import provision
from tests.integration.conftest import LOGINS

MIB = 1024 * 1024
MAX_RESULT_BYTES = 10 * MIB  # the default
BOUND = MAX_RESULT_BYTES * 2 + 50 * MIB
NDJSON = {"Accept": "application/x-ndjson"}


def _worker(master_pid: int) -> psutil.Process:
    (worker,) = psutil.Process(master_pid).children()
    return worker


@contextmanager
def peak_growth(master_pid: int) -> Iterator[Callable[[], int]]:
    """Yields a function giving the worker's peak RSS growth (bytes) since entering."""
    worker = _worker(master_pid)
    baseline = worker.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, worker.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield lambda: peak - baseline
    finally:
        done.set()
        sampler.join()


@pytest.fixture(scope="module")
def unbounded_postgres(tmp_path_factory):
    """A server without the StatefulSet's per-process memory cap, which would refuse to
    build the widest values: the gateway must bound them whatever the server sends."""
    server = LocalPostgres(tmp_path_factory.mktemp("unbounded") / "pgdata")
    server.start()
    provision(server, LOGINS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def measured(start_gateway_for, unbounded_postgres):
    unbounded_postgres.execute(
        "create table if not exists wide (body text)", dsn=LOGINS.gateway_dsn(unbounded_postgres)
    )
    gateway = start_gateway_for(
        server=unbounded_postgres, WORKERS="1", POOL_MAX="2", STATEMENT_TIMEOUT_MS="15000"
    )
    for _ in range(3):  # warm the worker: imports, pool, caches
        gateway.query("select repeat('x', 1000) as w from generate_series(1, 100)")
    return gateway


PLAIN = [
    ("wide rows", "select repeat('x', 100000) as w from generate_series(1, 100000)", 413),
    ("one huge value", "select repeat('x', 12 * 1024 * 1024) as w", 413),
    ("a 500 MB value", "select repeat('x', 500000000) as w", 413),
    (
        "EXECUTE of a prepared statement",
        "prepare wide_rows as select repeat('x', 100000) as w from generate_series(1, 10000); "
        "execute wide_rows",
        413,
    ),
    (
        "FETCH ALL from a client's cursor",
        "declare wide_cursor cursor for select repeat('x', 100000) as w "
        "from generate_series(1, 10000); fetch all from wide_cursor",
        413,
    ),
    (
        "50 notices of 8 MB",
        "do $$ begin for i in 1..50 loop raise notice '%', repeat('x', 8000000); end loop; end $$",
        200,
    ),
    (
        "10^8 rows behind a CTE",
        "with a as (select 1) select generate_series(1, 100000000) as n",
        413,
    ),
    (
        "10^8 rows, last of two statements",
        "select 1; select generate_series(1, 100000000) as n",
        413,
    ),
    (
        "RETURNING of wide rows",
        "insert into wide select repeat('x', 100000) from generate_series(1, 2000) returning *",
        413,
    ),
    (
        "a wide result under the limit",
        "select repeat('x', 1000) from generate_series(1, 9000)",
        200,
    ),
]


@pytest.mark.parametrize(("name", "sql", "status"), PLAIN, ids=[case[0] for case in PLAIN])
def test_a_plain_answer_stays_within_the_bound(measured, name: str, sql: str, status: int) -> None:
    with peak_growth(measured.process.pid) as growth:
        response = measured.query(sql, max_rows=100_000_000 if "10^8" not in name else None)
        assert response.status_code == status, response.text[:300]
    print(f"\nmemory: {name}: {status}, worker RSS +{growth() / MIB:.1f} MiB")
    assert growth() <= BOUND


STREAMS = [
    ("100 kB rows", "select repeat('x', 100000) as w from generate_series(1, 3000)", 3000),
    (
        "10^6 narrow rows",
        "select g as n, md5(g::text) as h from generate_series(1, 1000000) g",
        1000000,
    ),
]


@pytest.mark.parametrize(("name", "sql", "rows"), STREAMS, ids=[case[0] for case in STREAMS])
def test_a_stream_stays_within_the_bound(measured, name: str, sql: str, rows: int) -> None:
    stream = measured.post("/query", {"query": sql}, headers=dict(NDJSON), stream=True)
    with peak_growth(measured.process.pid) as growth, stream as response:
        assert response.status_code == 200
        lines = sum(1 for line in response.iter_lines() if line)
    print(f"\nmemory: stream of {name}: {lines} lines, worker RSS +{growth() / MIB:.1f} MiB")
    assert lines == rows
    assert growth() <= BOUND


def test_a_stream_of_10_8_rows_left_by_its_client_stays_within_the_bound(measured) -> None:
    sql = "select generate_series(1, 100000000) as n"
    with peak_growth(measured.process.pid) as growth:
        stream = measured.post("/query", {"query": sql}, headers=dict(NDJSON), stream=True)
        with stream as response:
            for read, _line in enumerate(response.iter_lines()):
                if read >= 2_000_000:
                    break
    print(f"\nmemory: 2,000,000 of 10^8 streamed rows, worker RSS +{growth() / MIB:.1f} MiB")
    assert growth() <= BOUND
    assert measured.query("select 1 as ok").json() == {"result": [{"ok": 1}]}


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
# The worst requests measured against one backend, each asking PostgreSQL for gigabytes.
WORST_FOR_POSTGRES = [
    (
        "string_agg of 3 GB",
        "select length(string_agg(repeat('x', 1000), ',')) from generate_series(1, 3000000)",
    ),
    (
        "a sort in 2 GB of work_mem",
        "set local work_mem = '2GB'; select count(*) from "
        "(select g, md5(g::text) from generate_series(1, 20000000) g order by 2) s",
    ),
    (
        "a hash aggregate in 20 GB of hash memory",
        "set local work_mem = '2GB'; set local hash_mem_multiplier = 10; select count(*) from "
        "(select md5(g::text), count(*) from generate_series(1, 20000000) g group by 1) s",
    ),
]


@contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A memory cgroup (v1, as on the gate's machines) of that limit, without swap."""
    if not (CGROUP_MEMORY / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.fail(f"needs root and the cgroup v1 memory controller at {CGROUP_MEMORY}")
    group = CGROUP_MEMORY / f"pg-gateway-test-{os.getpid()}-{secrets.token_hex(3)}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        (group / "memory.swappiness").write_text("0")
        yield group
    finally:
        deadline = time.monotonic() + 30  # processes that just exited may still be listed
        while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        group.rmdir()


@pytest.fixture
def deployed_postgres(tmp_path):
    """PostgreSQL as the StatefulSet runs it (settings, per-process cap), inside a memory
    cgroup with the container's limit, as the kubelet would put it."""
    deployed = deployed_server()
    server = local_server(tmp_path / "pgdata")
    server.start()
    provision(server, LOGINS)
    try:
        with memory_cgroup(deployed.memory_limit_bytes) as group:
            try:
                postmaster = psutil.Process(server.pid)
                for process in [postmaster, *postmaster.children(recursive=True)]:
                    # A backend of provisioning may end between the listing and the move
                    # (seen once in CI: ProcessLookupError): it is gone, nothing to move.
                    with suppress(ProcessLookupError):
                        (group / "cgroup.procs").write_text(str(process.pid))
                yield server, group
            finally:
                server.stop()  # before the cgroup goes: it must hold no process then
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("name", "sql"), WORST_FOR_POSTGRES, ids=[w[0] for w in WORST_FOR_POSTGRES]
)
def test_one_backends_memory_never_restarts_postgres(
    deployed_postgres, start_gateway_for, name: str, sql: str
) -> None:
    """The backend that asks for too much gets "out of memory" and ends its own statement;
    without the cap the kernel kills it in the cgroup, and PostgreSQL restarts every session."""
    server, group = deployed_postgres
    bystander = psycopg2.connect(LOGINS.gateway_dsn(server))
    gateway = start_gateway_for(server=server, WORKERS="1", MAX_STATEMENT_TIMEOUT_MS="120000")
    response = gateway.query(sql, timeout_ms=120000)
    peak = int((group / "memory.max_usage_in_bytes").read_text())
    print(
        f"\nmemory: {name}: {response.status_code}, PostgreSQL's cgroup peak {peak / MIB:.0f} MiB"
    )
    assert response.status_code in {400, 503}, response.text
    assert response.json()["error"]["sqlstate"] in {"53200", "54000"}, response.text
    with bystander.cursor() as cursor:  # a restart would have ended this session
        cursor.execute("select 1")
    bystander.close()
    assert psutil.Process(server.pid).is_running()
