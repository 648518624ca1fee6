"""NDJSON streaming from a server-side cursor, in bounded memory, with no row cap."""

from __future__ import annotations

import json
import threading

import psutil

NDJSON = {"Accept": "application/x-ndjson"}
ROWS = 1_000_000
MEMORY_LIMIT_BYTES = 50 * 1024 * 1024


def worker_rss(master_pid: int) -> int:
    return sum(child.memory_info().rss for child in psutil.Process(master_pid).children())


def test_streaming_a_million_rows_keeps_memory_bounded(start_gateway_for) -> None:
    gateway = start_gateway_for(WORKERS="1", MAX_ROWS="10")
    warm = gateway.post("/query", {"query": "select 1 as n"}, headers=dict(NDJSON))
    assert warm.text == '{"n":1}\n'
    baseline = worker_rss(gateway.process.pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, worker_rss(gateway.process.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    sql = "select g as id, md5(g::text) as hash from generate_series(1, %s) g"
    try:
        with gateway.post(
            "/query", {"query": sql, "params": [ROWS]}, headers=dict(NDJSON), stream=True
        ) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("application/x-ndjson")
            count = 0
            last = None
            for line in response.iter_lines():
                count += 1
                last = line
    finally:
        done.set()
        sampler.join()
    assert count == ROWS  # MAX_ROWS=10 does not apply to streams
    assert json.loads(last)["id"] == ROWS
    growth = peak - baseline
    print(f"worker RSS baseline {baseline / 2**20:.1f} MiB, growth {growth / 2**20:.1f} MiB")
    assert growth < MEMORY_LIMIT_BYTES


def test_stream_error_before_first_row_gets_a_status(gateway) -> None:
    response = gateway.post("/query", {"query": "select * from no_such_table"}, headers=NDJSON)
    assert response.status_code == 400
    assert response.json()["error"]["sqlstate"] == "42P01"


def test_stream_error_after_first_rows_ends_with_error_line(gateway) -> None:
    sql = "select 1 / (5000 - g) as x from generate_series(1, 6000) g"
    response = gateway.post("/query", {"query": sql}, headers=NDJSON)
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert json.loads(lines[-1])["error"]["sqlstate"] == "22012"
    assert len(lines) > 1
