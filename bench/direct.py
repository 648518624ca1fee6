"""The floor: psycopg2 from N threads, one connection each, no HTTP.

Each thread runs the workload's statement in autocommit (one round trip, as a client
that talks to PostgreSQL directly would) and fetches every row. The threads run in a
child process so the measuring process stays out of their GIL.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import psycopg2

from bench.loadgen import Result
from bench.workloads import WORKLOADS


def _percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


def _worker(dsn: str, sql: str, max_id: int, stop: threading.Event, latencies: list[int]) -> None:
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    rng = random.Random()  # noqa: S311 - load generation, not cryptography
    cursor = connection.cursor()
    clock = time.perf_counter_ns
    try:
        while not stop.is_set():
            params = (rng.randint(1, max_id),) if max_id else None
            started = clock()
            cursor.execute(sql, params)
            if cursor.description is not None:
                cursor.fetchall()
            latencies.append(clock() - started)
    finally:
        connection.close()


def measure(dsn: str, key: str, max_id: int, threads: int, seconds: float) -> dict:
    workload = next(w for w in WORKLOADS if w.key == key)
    sql = workload.gateway_sql
    stop = threading.Event()
    latencies: list[list[int]] = [[] for _ in range(threads)]
    workers = [
        threading.Thread(
            target=_worker, args=(dsn, sql, max_id if workload.random_id else 0, stop, lat)
        )
        for lat in latencies
    ]
    cpu_before = time.process_time()
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # warm-up: connections open, plans cached
    for lat in latencies:
        lat.clear()
    cpu_before = time.process_time()
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    counts = [len(lat) for lat in latencies]
    cpu = time.process_time() - cpu_before
    stop.set()
    for worker in workers:
        worker.join()
    ordered = sorted(x for lat, n in zip(latencies, counts, strict=True) for x in lat[:n])
    return {
        "requests": len(ordered),
        "seconds": elapsed,
        "p50_ms": _percentile(ordered, 0.50),
        "p95_ms": _percentile(ordered, 0.95),
        "p99_ms": _percentile(ordered, 0.99),
        "errors": 0,
        "client_cpu": cpu / elapsed,
    }


def run_direct(dsn: str, key: str, max_id: int, threads: int, seconds: float) -> Result:
    """`measure` in a child process (`python -m bench.direct`), answered as JSON."""
    args = [sys.executable, "-m", "bench.direct", dsn, key, str(max_id), str(threads)]
    finished = subprocess.run([*args, str(seconds)], capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"direct driver run failed: {finished.stderr.strip()}")
    return Result(**json.loads(finished.stdout))


if __name__ == "__main__":
    _dsn, _key, _max_id, _threads, _seconds = sys.argv[1:6]
    print(json.dumps(measure(_dsn, _key, int(_max_id), int(_threads), float(_seconds))))
