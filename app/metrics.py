"""Prometheus metrics, correct under several gunicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (as `python -m app` does), every worker writes its
samples to files there and `/metrics` aggregates all workers, whichever one answers.
prometheus_client names a worker's files by its pid, which it asks the OS for at every
sample (a getpid syscall each, 12 per request); here it gets the pid app.lifecycle read once
per process.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from app.lifecycle import current_pid
from app.pool import ConnectionPool


def _after_fork() -> None:
    """None of the pool gauges a worker's parent wrote counted as its own."""
    _POOL_WRITTEN.clear()


os.register_at_fork(after_in_child=_after_fork)  # gunicorn forks its workers
if values.ValueClass is not values.MutexValue:  # prometheus_client chose multiprocess files
    values.ValueClass = values.MultiProcessValue(process_identifier=current_pid)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("gateway_requests_total", "HTTP requests answered", ["route", "status"])
REQUEST_SECONDS = Histogram(
    "gateway_request_duration_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS
)
QUERY_SECONDS = Histogram(
    "gateway_query_duration_seconds",
    "Time spent in PostgreSQL per request",
    buckets=_LATENCY_BUCKETS,
)
SQL_ERRORS = Counter(
    "gateway_sql_errors_total",
    "Requests failed by PostgreSQL, by SQLSTATE class",
    ["sqlstate_class"],
)
# One pool per PostgreSQL login (the gateway's own, and one per role a token maps to).
POOL_SIZE = Gauge(
    "gateway_pool_connections", "Open connections", ["login"], multiprocess_mode="livesum"
)
POOL_IN_USE = Gauge(
    "gateway_pool_in_use", "Connections lent out", ["login"], multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "gateway_pool_waiting",
    "Requests waiting for a connection",
    ["login"],
    multiprocess_mode="livesum",
)

BACKENDS_TERMINATED = Counter(
    "gateway_backends_terminated_total",
    "Backends the gateway ended itself because they outlived their request",
    ["login"],
)

TOKEN_IN_FLIGHT = Gauge(
    "gateway_token_requests_in_flight",
    "Requests of a token being served (by the token's name, never the secret)",
    ["token"],
    multiprocess_mode="livesum",
)
TOKEN_REFUSED = Counter(
    "gateway_token_refused_total",
    "Requests answered 429 because their token (or its client) had its share in flight",
    ["token"],
)

CONNECTIONS_SHED = Counter(
    "gateway_connections_shed_total",
    "Client connections a worker closed at its WORKER_CONNECTIONS: an idle one to make room "
    "(reason idle), or the new one when every connection was busy (reason full)",
    ["reason"],
)


# Every labelled series once looked up. The label values come from bounded sets: the
# configured tokens and logins, the app's routes and the statuses it answers, two reasons.
_SERIES: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _series(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: labels() checks and locks at every call."""
    series = _SERIES.get((metric, labels))
    if series is None:
        series = _SERIES[metric, labels] = metric.labels(*labels)
    return series


def record_shed(reason: str) -> None:
    _series(CONNECTIONS_SHED, reason).inc()


def record_in_flight(token: str, change: int) -> None:
    _series(TOKEN_IN_FLIGHT, token).inc(change)


def record_refused(token: str) -> None:
    _series(TOKEN_REFUSED, token).inc()


def record_terminated(login: str) -> None:
    _series(BACKENDS_TERMINATED, login).inc()


def record_request(route: str, status: int, seconds: float) -> None:
    _series(REQUESTS, route, str(status)).inc()
    _series(REQUEST_SECONDS, route).observe(seconds)


# Per login: the (size, in use, waiting) values this process last wrote.
_POOL_WRITTEN: dict[str, list[int]] = {}


def record_pool(pool: ConnectionPool) -> None:
    """Called on every acquire and release: a gauge is written only when its value moved
    (each write is a locked write to this process's file; the size and the waiters rarely
    move)."""
    written = _POOL_WRITTEN.setdefault(pool.login, [-1, -1, -1])
    for index, (gauge, value) in enumerate(
        ((POOL_SIZE, pool.size), (POOL_IN_USE, pool.in_use), (POOL_WAITING, pool.waiting))
    ):
        if value != written[index]:
            _series(gauge, pool.login).set(value)
            written[index] = value


def run_with_multiprocess_files(module: str) -> None:
    """Re-execute `python -m module` once with PROMETHEUS_MULTIPROC_DIR set, unless it is:
    prometheus_client picks its multi-process mode when first imported, which importing
    this module already did. The PID stays (PID 1 stays PID 1 in a container)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    metrics_dir = tempfile.mkdtemp(prefix="pg-gateway-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)  # noqa: S606


def render() -> tuple[bytes, str]:
    """The exposition text of all workers (or of this process when not under gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
