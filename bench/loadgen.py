"""wrk as the load generator, with a Lua script for POST bodies and exact percentiles.

wrk is a C event loop; its own CPU time is read from the kernel (rusage of the waited
child) for every cell, so the report can show it never needed a whole core.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
-- Body from BENCH_BODY; "{ID}" becomes a random id in 1..BENCH_MAX_ID per request.
local template = os.getenv("BENCH_BODY")
local max_id = tonumber(os.getenv("BENCH_MAX_ID") or "0")
local path = os.getenv("BENCH_PATH") or "/"
local content_type = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local headers = { ["Content-Type"] = content_type }
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

if template ~= nil then
  wrk.method = "POST"
  wrk.path = path
  wrk.headers["Content-Type"] = content_type
  wrk.body = template
  if max_id > 0 then
    function request()
      local body = template:gsub("{ID}", tostring(math.random(max_id)))
      return wrk.format("POST", path, headers, body)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Result:
    """One cell: a system, a workload, a concurrency."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    client_cpu: float  # cores the load generator used on average (wrk or the direct threads)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """wrk's path; installs the Debian package when missing and we are root with apt."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: wrk is missing; installing the Debian package 'wrk'", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench: the load generator wrk is not installed. Install it first "
        "(Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk) and run again."
    )


def write_script(directory: Path) -> Path:
    path = directory / "bench.lua"
    path.write_text(LUA)
    return path


def run_wrk(
    wrk: str,
    script: Path,
    url: str,
    path: str,
    body: str | None,
    max_id: int,
    connections: int,
    seconds: float,
    threads: int | None = None,
    content_type: str = "application/json",
) -> Result:
    """One wrk run; `connections` is the concurrency (each connection has one request open)."""
    threads = threads or min(connections, 2)
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_MAX_ID": str(max_id),
        "BENCH_CONTENT_TYPE": content_type,
    }
    if body is not None:
        env["BENCH_BODY"] = body
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in finished.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if finished.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        client_cpu=cpu / wall,
    )
