"""The same-run comparison: every HTTP system on one pinned CPU, in alternated rounds, its
CPU per request read from /proc beside req/s and p99.

A system's processes (and every thread and child they make) are pinned to SERVER_CPU, which
nothing else uses; wrk, PostgreSQL and this process share the other CPU. So a system's CPU
time is its own, one core is its ceiling, and the load generator never takes its CPU.
Each round runs every system once, in an order rotated every round, so whatever the machine
does meanwhile falls on all of them alike; the report takes each system's medians over its
rounds, with the lowest and highest CPU per request of them beside.

The previous release runs as a system of its own (its `app/` from git, this environment),
so "X times its CPU" compares two servers measured minutes apart on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from bench.database import ITEMS, BenchDatabase
from bench.floors import FLOOR
from bench.floors import starters as floor_starters
from bench.loadgen import ensure_wrk, run_wrk, write_script
from bench.systems import (
    ROOT,
    START_TIMEOUT_S,
    Service,
    find_pgweb,
    start_gateway_service,
    start_pgmeta,
    start_pgweb,
    wait_post,
)
from bench.workloads import WORKLOADS, Workload
from harness.local.postgres import free_port
from harness.local.serve import start_gateway

# The release issue 18 measured (docs/benchmarks.md, "Same-run comparison").
BASELINE_RELEASE = "017843a"
SERVER_CPU = 0
CONCURRENCY = 8


@dataclass(frozen=True)
class Round:
    """One system under one workload for one round."""

    system: str
    workload: str
    rps: float
    p99_ms: float
    cpu_ms: float  # the system's CPU per request, all its processes and threads
    kernel_cpu_ms: float  # of it, system time: syscalls, the network stack
    postgres_cpu_ms: float  # PostgreSQL's CPU per request in the same seconds
    errors: int


@contextlib.contextmanager
def on_cpus(cpus: set[int]) -> Iterator[None]:
    """Whatever starts inside inherits these CPUs; this process gets its own back after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def other_cpus() -> set[int]:
    cpus = os.sched_getaffinity(0) - {SERVER_CPU}
    if SERVER_CPU not in os.sched_getaffinity(0) or not cpus:
        raise SystemExit(
            f"bench: the same-run comparison needs CPU {SERVER_CPU} and one more; "
            f"this process may use {sorted(os.sched_getaffinity(0))}"
        )
    return cpus


def _tree(pid: int) -> Iterator[psutil.Process]:
    """A process and its living descendants."""
    root = psutil.Process(pid)
    yield from (root, *root.children(recursive=True))


def pin_tree(pid: int, cpus: set[int]) -> None:
    """A running process and its children (PostgreSQL's postmaster and backends) to `cpus`;
    what the postmaster forks later inherits them."""
    for process in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.cpu_affinity(sorted(cpus))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system time of a process and its descendants, from /proc: the living ones',
    and the ones their parents have reaped (a PostgreSQL backend that ended during a round
    took its time out of the sum, which came out negative)."""
    user = system = 0.0
    for process in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            user += times.user + times.children_user
            system += times.system + times.children_system
    return user, system


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def export_release(revision: str, directory: Path) -> Path:
    """The release's `app/` package, from this repository's history, under `directory`."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "app"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"bench: cannot read release {revision} from git ({error}); "
            "run from a clone with history, or pass --baseline none"
        ) from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def start_release(tree: Path, dsn: str, log: IO) -> Service:
    """An earlier release's gateway as it ran then: `python -m app` in its own tree (its
    operations port may not exist yet, so the wait is for an answered query)."""
    port = free_port()
    process = start_gateway(dsn, "127.0.0.1", (port, free_port()), {"WORKERS": "1"}, log, tree)
    service = Service("gateway", process, port)
    wait_post(service.url + "/query", b'{"query":"select 1"}', process, START_TIMEOUT_S)
    return service


def _body(system: str, workload: Workload) -> tuple[str, str, str]:
    """(path, body, content type) of the workload as `system` spells it."""
    if system.startswith("pgweb"):
        return "/api/query", workload.pgweb_body(), "application/x-www-form-urlencoded"
    if system.startswith("postgres-meta"):
        return "/query", workload.pgmeta_body(), "application/json"
    return "/query", workload.gateway_body(), "application/json"


def measure(
    wrk: str,
    script: Path,
    service: Service,
    workload: Workload,
    postgres_pid: int,
    seconds: float,
) -> Round:
    path, body, content_type = _body(service.name, workload)
    server_before, pg_before = cpu_split(service.process.pid), cpu_seconds(postgres_pid)
    result = run_wrk(
        wrk,
        script,
        service.url,
        path,
        body,
        ITEMS,
        CONCURRENCY,
        seconds,
        threads=1,
        content_type=content_type,
    )
    user, system = (
        after - before
        for after, before in zip(cpu_split(service.process.pid), server_before, strict=True)
    )
    postgres = cpu_seconds(postgres_pid) - pg_before
    requests = max(result.requests, 1)
    return Round(
        system=service.name,
        workload=workload.key,
        rps=result.rps,
        p99_ms=result.p99_ms,
        cpu_ms=1000 * (user + system) / requests,
        kernel_cpu_ms=1000 * system / requests,
        postgres_cpu_ms=1000 * postgres / requests,
        errors=result.errors,
    )


def start_systems(
    dsn: str, log: IO, workdir: Path, baseline: str | None, pgweb: Path | None, floors: bool
) -> tuple[dict[str, Service], list[str]]:
    """Every system pinned to SERVER_CPU; notes say what was left out and why."""
    starters: list[tuple[str, Callable[[], Service]]] = [
        ("gateway", lambda: start_gateway_service(dsn, log, {"WORKERS": "1"})),
    ]
    notes = []
    if baseline:
        tree = export_release(baseline, workdir / f"release-{baseline}")
        starters.append((f"gateway {baseline}", lambda: start_release(tree, dsn, log)))
    if pgweb is not None:
        starters.append(("pgweb", lambda: start_pgweb(pgweb, dsn, log)))
    else:
        notes.append(
            "pgweb: skipped, no binary (set PGWEB=/path/to/pgweb or put it on PATH; "
            "docs/benchmarks.md, 'pgweb' says how to build it)"
        )
    if shutil.which("node"):
        starters.append(("postgres-meta", lambda: start_pgmeta(dsn, log)))
    else:
        notes.append("postgres-meta: skipped, node is not installed")
    if floors:
        starters += floor_starters(log)
    services = {}
    with on_cpus({SERVER_CPU}):
        for name, start in starters:
            service = start()
            service.name = name
            services[name] = service
    return services, notes


def run_rounds(
    wrk: str,
    script: Path,
    services: dict[str, Service],
    postgres_pid: int,
    workloads: list[Workload],
    rounds: int,
    seconds: float,
    warmup: float,
) -> list[Round]:
    results = []
    for workload in workloads:
        # A floor answers every workload alike: it runs with the first one only.
        names = [n for n in services if workload == workloads[0] or not n.startswith(FLOOR)]
        for name in names:
            if warmup > 0:
                measure(wrk, script, services[name], workload, postgres_pid, warmup)
        for number in range(rounds):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                results.append(
                    measure(wrk, script, services[name], workload, postgres_pid, seconds)
                )
                print(f"  same-run {number + 1}/{rounds} {_line(results[-1])}", flush=True)
    return results


def _line(r: Round) -> str:
    return (
        f"{r.system:>16} {r.workload:>8}: {r.rps:8,.0f} req/s  p99 {r.p99_ms:6.2f} ms  "
        f"CPU {r.cpu_ms * 1000:6.0f} us/request (kernel {r.kernel_cpu_ms * 1000:4.0f})  "
        f"PostgreSQL {r.postgres_cpu_ms * 1000:5.0f} us"
        f"  errors {r.errors}"
    )


def medians(results: list[Round]) -> dict[tuple[str, str], Round]:
    """Each (system, workload)'s median of every figure over its rounds."""
    grouped: dict[tuple[str, str], list[Round]] = {}
    for r in results:
        grouped.setdefault((r.system, r.workload), []).append(r)
    return {
        key: Round(
            system=key[0],
            workload=key[1],
            rps=statistics.median(r.rps for r in group),
            p99_ms=statistics.median(r.p99_ms for r in group),
            cpu_ms=statistics.median(r.cpu_ms for r in group),
            kernel_cpu_ms=statistics.median(r.kernel_cpu_ms for r in group),
            postgres_cpu_ms=statistics.median(r.postgres_cpu_ms for r in group),
            errors=sum(r.errors for r in group),
        )
        for key, group in grouped.items()
    }


def cpu_ranges(results: list[Round]) -> dict[tuple[str, str], tuple[float, float]]:
    """Each (system, workload)'s lowest and highest CPU per request over its rounds: how far
    one round of this machine strays, beside the median."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for r in results:
        grouped.setdefault((r.system, r.workload), []).append(r.cpu_ms)
    return {key: (min(values), max(values)) for key, values in grouped.items()}


def markdown(results: list[Round], notes: list[str], baseline: str | None) -> list[str]:
    """The medians, each system's figures beside this gateway's, and the issue's targets."""
    table = medians(results)
    ranges = cpu_ranges(results)
    out = [
        "## Same-run comparison, one pinned core per system",
        "",
        f"Each system alone on CPU {SERVER_CPU}, wrk (1 thread, c={CONCURRENCY}) and "
        f"PostgreSQL on the others; rounds alternated, medians of {len(results) // len(table)} "
        "rounds. CPU = user + system time of all the system's processes per request, "
        "from /proc; kernel = the system time of it (syscalls, the network stack).",
        "",
        "| workload | system | req/s | p99 ms | CPU us/request | rounds' CPU us | kernel us "
        "| PostgreSQL us/request | CPU vs gateway | req/s vs gateway | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in {r.workload: None for r in results}:
        ours = table[("gateway", workload)]
        for key, r in table.items():
            if key[1] != workload:
                continue
            low, high = ranges[key]
            out.append(
                f"| {workload} | {r.system} | {r.rps:,.0f} | {r.p99_ms:.2f} | "
                f"{r.cpu_ms * 1000:,.0f} | {low * 1000:,.0f}-{high * 1000:,.0f} | "
                f"{r.kernel_cpu_ms * 1000:,.0f} | "
                f"{r.postgres_cpu_ms * 1000:,.0f} | "
                f"{r.cpu_ms / ours.cpu_ms:.2f}x | {r.rps / ours.rps:.2f}x | {r.errors} |"
            )
    out += ["", "| target | measured | met |", "|---|---:|:---:|"]
    for name, value, met in targets(table, baseline):
        out.append(f"| {name} | {value} | {'yes' if met else '**no**'} |")
    out += ["", *(f"- {note}" for note in notes)]
    return out


def targets(table: dict[tuple[str, str], Round], baseline: str | None) -> list:
    """Issue 18's: half the release's CPU, pgweb's req/s, the release's p99."""
    checks = []
    for workload in ("select1", "point"):
        ours = table.get(("gateway", workload))
        if ours is None:
            continue
        old = table.get((f"gateway {baseline}", workload))
        if old:
            share = ours.cpu_ms / old.cpu_ms
            checks.append(
                (f"{workload}: CPU/request <= 0.5x {baseline}'s", f"{share:.2f}x", share <= 0.5)
            )
            checks.append(
                (
                    f"{workload}: p99 <= {baseline}'s",
                    f"{ours.p99_ms:.2f} vs {old.p99_ms:.2f} ms",
                    ours.p99_ms <= old.p99_ms,
                )
            )
        peer = table.get(("pgweb", workload))
        if peer:
            share = ours.rps / peer.rps
            checks.append((f"{workload}: req/s >= pgweb's", f"{share:.2f}x", share >= 1))
    return checks


def compare(
    database: BenchDatabase,
    wrk: str,
    script: Path,
    workdir: Path,
    options: argparse.Namespace,
) -> list[str]:
    """Start every system, run the rounds, stop them; the report's section as lines."""
    others = other_cpus()
    pin_tree(database.server.pid, others)
    with on_cpus(others), (workdir / "same-run.log").open("w") as log:
        services, notes = start_systems(
            database.dsn, log, workdir, options.baseline, find_pgweb(), options.floors
        )
        try:
            results = run_rounds(
                wrk,
                script,
                services,
                database.server.pid,
                [w for w in WORKLOADS if w.key in options.same_run_workloads],
                options.rounds,
                options.round_seconds,
                options.warmup,
            )
        finally:
            for service in services.values():
                service.stop()
    return markdown(results, notes, options.baseline)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="same-run rounds, 0 skips [5]")
    parser.add_argument("--round-seconds", type=float, default=8, help="per system a round [8]")
    parser.add_argument(
        "--same-run-workloads", nargs="+", default=["select1", "point"], metavar="WORKLOAD"
    )
    parser.add_argument(
        "--no-floors",
        dest="floors",
        action="store_false",
        help="leave out the HTTP servers with no database (bench.floors)",
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE_RELEASE,
        type=lambda value: None if value == "none" else value,
        help=f"an earlier release run beside this one, or none [{BASELINE_RELEASE}]",
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.samerun", description=__doc__)
    parser.add_argument("--warmup", type=float, default=2, help="per system and workload [2]")
    add_arguments(parser)
    options = parser.parse_args()
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="pg-gateway-samerun-"))
    database = BenchDatabase(workdir)
    try:
        database.start()
        lines = compare(database, wrk, write_script(workdir), workdir, options)
    finally:
        database.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
