"""Prometheus metrics, correct under several gunicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (as `python -m app` does), every worker writes its
samples to files there and `/metrics` aggregates all workers, whichever one answers.
prometheus_client names a worker's files by its pid, which it asks the OS for at every
sample (a getpid syscall each, 12 per request); here the pid is read once per process.
"""

from __future__ import annotations

import os
import sys
import tempfile

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

from app.pool import ConnectionPool

_pid = os.getpid()


def _after_fork() -> None:
    """A worker's pid, and none of the pool gauges its parent wrote counted as its own."""
    global _pid
    _pid = os.getpid()
    _POOL_GAUGES.clear()


os.register_at_fork(after_in_child=_after_fork)  # gunicorn forks its workers
if values.ValueClass is not values.MutexValue:  # prometheus_client chose multiprocess files
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid)

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


def record_shed(reason: str) -> None:
    CONNECTIONS_SHED.labels(reason).inc()


def record_in_flight(token: str, change: int) -> None:
    TOKEN_IN_FLIGHT.labels(token).inc(change)


def record_refused(token: str) -> None:
    TOKEN_REFUSED.labels(token).inc()


def record_terminated(login: str) -> None:
    BACKENDS_TERMINATED.labels(login).inc()


# Per login: its labelled (size, in use, waiting) gauges and the values last written.
_POOL_GAUGES: dict[str, tuple[tuple[Gauge, Gauge, Gauge], list[int]]] = {}


def record_pool(pool: ConnectionPool) -> None:
    """Called on every acquire and release: a gauge is written only when its value moved
    (each write is a locked write to this process's file; the size and the waiters rarely
    move)."""
    known = _POOL_GAUGES.get(pool.login)
    if known is None:
        gauges = tuple(gauge.labels(pool.login) for gauge in (POOL_SIZE, POOL_IN_USE, POOL_WAITING))
        known = _POOL_GAUGES[pool.login] = (gauges, [-1, -1, -1])
    gauges, written = known
    for index, value in enumerate((pool.size, pool.in_use, pool.waiting)):
        if value != written[index]:
            gauges[index].set(value)
            written[index] = value


_REQUEST_SERIES: dict[tuple[str, int], tuple[Counter, Histogram]] = {}


def record_request(route: str, status: int, seconds: float) -> None:
    """An answered request: its labelled series are looked up once per route and status
    (a bounded set: the app's routes and "unmatched", the statuses it answers)."""
    series = _REQUEST_SERIES.get((route, status))
    if series is None:
        series = _REQUEST_SERIES[route, status] = (
            REQUESTS.labels(route, str(status)),
            REQUEST_SECONDS.labels(route),
        )
    series[0].inc()
    series[1].observe(seconds)


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
