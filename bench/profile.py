"""`python -m bench.profile`: where a gateway worker spends its time under load.

Starts PostgreSQL and the gateway (one worker unless told otherwise), drives one workload
with wrk and samples the worker with py-spy (only threads holding the GIL, i.e. Python
CPU), then prints the hottest functions by inclusive share. The raw samples are kept for
flame graphs.

    python -m bench.profile --workload point --seconds 10 --gateway-env WORKERS=1
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from bench.database import ITEMS, BenchDatabase
from bench.loadgen import ensure_wrk, run_wrk, write_script
from bench.systems import ROOT, start_gateway_service
from bench.workloads import WORKLOADS, Workload

_FRAME = re.compile(r"\s*\((?:.*/)?([^/]+):\d+\)")
_PATH = re.compile(r"\(([^()]*):\d+\)\s*$")
# Packages named as the breakdown names them.
_GROUPS = {
    "gunicorn": "gunicorn (the worker process)",
    "gevent": "gevent (hub, timeouts, sockets)",
    "flask": "Flask/Werkzeug",
    "werkzeug": "Flask/Werkzeug",
    "prometheus_client": "metrics (prometheus_client)",
    "logging": "logging (the access log)",
    "psycopg2": "psycopg2",
}


def summarize(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    total = skipped = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            skipped += 1  # py-spy cuts a line whose stack it could not finish reading
            continue
        total += int(count)
        for frame in {_FRAME.sub(r" (\1)", f) for f in stack.split(";")}:
            inclusive[frame] += int(count)
    lines = [
        f"{total} samples holding the GIL ({skipped} unreadable lines left out); inclusive share:"
    ]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def components(raw: Path) -> str:
    """Self time by the package of the innermost Python frame: where the CPU goes, in the
    terms of the issue's breakdown (a C call counts for the Python function calling it)."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        total += int(count)
        match = _PATH.search(stack.rsplit(";", 1)[-1])
        own[_component(match.group(1) if match else "?")] += int(count)
    lines = [f"self time by component ({total} samples holding the GIL):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common()]
    return "\n".join(lines)


def _component(path: str) -> str:
    if not (path.isascii() and path.isprintable()):
        return "? (a frame py-spy read while it changed)"
    top, _, rest = path.partition("/")
    if not rest:
        return top.removesuffix(".py")
    if top == "app":
        return "app." + rest.removesuffix(".py")
    return _GROUPS.get(top, top)


def find_py_spy() -> str:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("bench: py-spy is missing (it is in the bench dependency group)")
    return py_spy


def profile_gateway(
    database: BenchDatabase,
    workload: Workload,
    concurrency: int,
    seconds: float,
    out: Path,
    env: dict[str, str],
) -> None:
    """Drive a gateway (one worker unless `env` says otherwise) with wrk while py-spy
    records its worker; the raw samples go to `out`."""
    py_spy, wrk = find_py_spy(), ensure_wrk()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pg-gateway-profile-") as name:
        workdir = Path(name)
        log = (workdir / "gateway.log").open("w")
        gateway = start_gateway_service(database.dsn, log, {"WORKERS": "1", **env})
        try:
            worker = psutil.Process(gateway.process.pid).children()[0].pid
            load = threading.Thread(
                target=run_wrk,
                args=(wrk, write_script(workdir), gateway.url, "/query"),
                kwargs={
                    "body": workload.gateway_body(),
                    "max_id": ITEMS,
                    "connections": concurrency,
                    "seconds": seconds + 2,
                },
            )
            load.start()
            record = [py_spy, "record", "--pid", str(worker), "--gil", "--nonblocking"]
            record += ["--rate", "500", "--duration", str(round(seconds))]
            subprocess.run(
                [*record, "--format", "raw", "--output", str(out)], check=True, capture_output=True
            )
            load.join()
        finally:
            gateway.stop()
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--workload", choices=[w.key for w in WORKLOADS], default="point")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "profile.raw")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.gateway_env)
    workload = next(w for w in WORKLOADS if w.key == args.workload)
    workdir = Path(tempfile.mkdtemp(prefix="pg-gateway-profile-"))
    database = BenchDatabase(workdir)
    try:
        database.start()
        profile_gateway(database, workload, args.concurrency, args.seconds, args.out, env)
    finally:
        database.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(components(args.out))
    print(summarize(args.out, args.top))
    print(f"raw samples: {args.out} (flamegraph.pl or speedscope can draw them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
