"""Under gunicorn, each worker's samples go to files named by its own pid, which app.metrics
reads once per process rather than at every sample."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# Runs in a fresh interpreter: prometheus_client picks its file-backed values at import, when
# PROMETHEUS_MULTIPROC_DIR is set, as `python -m app` sets it.
_WORKER = textwrap.dedent(
    """
    import os, sys
    from app import metrics

    metrics.record_shed("idle")  # the master's own sample
    asked = []

    def count_getpid(frame, event, function):
        if event == "c_call" and function is os.getpid:
            asked.append(1)

    child = os.fork()
    if child == 0:
        metrics.record_shed("full")  # the first sample in a worker opens its files
        sys.setprofile(count_getpid)
        for _ in range(5):
            metrics.record_shed("full")
            metrics.QUERY_SECONDS.observe(0.01)
        sys.setprofile(None)
        os._exit(len(asked))
    _, status = os.waitpid(child, 0)
    print(child, os.waitstatus_to_exitcode(status))
    """
)


def test_a_forked_workers_samples_go_to_its_own_files_without_asking_its_pid(
    tmp_path: Path,
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    child, getpid_calls = (int(word) for word in done.stdout.split())
    assert getpid_calls == 0
    files = {path.name for path in tmp_path.iterdir()}
    assert f"counter_{child}.db" in files and f"histogram_{child}.db" in files, files


_POOLS = textwrap.dedent(
    """
    import os, types
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    from app import metrics

    def pool(size, in_use):
        return types.SimpleNamespace(login="gateway", size=size, in_use=in_use, waiting=0)

    metrics.record_pool(pool(2, 1))  # the master's own pool
    child = os.fork()
    if child == 0:  # a worker: the same figures in its own pool, counted as its own
        metrics.record_pool(pool(2, 1))
        metrics.record_pool(pool(2, 0))
        os._exit(0)
    os.waitpid(child, 0)
    metrics.record_pool(pool(3, 1))
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for name in ("gateway_pool_connections", "gateway_pool_in_use", "gateway_pool_waiting"):
        print(name, registry.get_sample_value(name, {"login": "gateway"}))
    """
)


def test_pool_gauges_follow_each_pool_and_a_worker_writes_its_own(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(
        [sys.executable, "-c", _POOLS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    values = dict(line.split() for line in done.stdout.splitlines())
    # livesum over the master (3 open, 1 lent out) and the worker (2 open, none lent out)
    assert values == {
        "gateway_pool_connections": "5.0",
        "gateway_pool_in_use": "1.0",
        "gateway_pool_waiting": "0.0",
    }
