"""NDJSON streaming of many rows through the gateway: rows/s and the server's peak RSS.

RSS is the sum over the gunicorn master and its workers, sampled every 20 ms while the
stream runs (PSS, which counts shared pages once, is reported alongside).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass

import psutil

SQL = (
    "select g as id, 'row ' || g as name, g * 0.5 as score,"
    " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' as created_at"
    " from generate_series(1, {rows}) g"
)


@dataclass(frozen=True)
class StreamResult:
    rows: int
    seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    idle_rss_mb: float
    bytes: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def _tree(pid: int) -> list[psutil.Process]:
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


def _memory(pid: int) -> tuple[float, float]:
    rss = pss = 0
    for process in _tree(pid):
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


def stream(port: int, server_pid: int, rows: int) -> StreamResult:
    idle_rss, _ = _memory(server_pid)
    peak = [idle_rss, 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _memory(server_pid)
            peak[0] = max(peak[0], rss)
            peak[1] = max(peak[1], pss)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    body = json.dumps({"query": SQL.format(rows=rows)})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    lines = size = 0
    try:
        connection.request(
            "POST",
            "/query",
            body,
            {"Content-Type": "application/json", "Accept": "application/x-ndjson"},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"streaming answered {response.status}: {response.read()[:300]!r}")
        tail = b""
        while chunk := response.read(1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
            tail = chunk[-200:]
        if b'"error"' in tail.rsplit(b"\n", 2)[-2]:
            raise RuntimeError(f"the stream ended with an error: {tail!r}")
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        connection.close()
    return StreamResult(lines, seconds, peak[0], peak[1], idle_rss, size)
