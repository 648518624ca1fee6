"""The same-run comparison's arithmetic, its CPU reading and its pinning, on this machine."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import profile, samerun
from bench.workloads import WORKLOADS


def _round(system: str, workload: str, rps: float, p99: float, cpu_us: float) -> samerun.Round:
    return samerun.Round(system, workload, rps, p99, cpu_us / 1000, cpu_us / 4000, 0.1, 0)


def test_medians_take_each_figure_of_the_middle_round() -> None:
    rounds = [
        _round("gateway", "select1", 1000, 9.0, 800),
        _round("gateway", "select1", 1300, 12.0, 700),
        _round("gateway", "select1", 1100, 10.0, 900),
    ]
    (median,) = samerun.medians(rounds).values()
    assert (median.rps, median.p99_ms, round(median.cpu_ms * 1000)) == (1100, 10.0, 800)


def test_targets_compare_with_the_release_and_the_peer() -> None:
    table = samerun.medians(
        [
            _round("gateway", "select1", 2000, 8.0, 300),
            _round("gateway 017843a", "select1", 1500, 9.0, 700),
            _round("pgweb", "select1", 2100, 20.0, 300),
        ]
    )
    checks = {name: met for name, _value, met in samerun.targets(table, "017843a")}
    assert checks == {
        "select1: CPU/request <= 0.5x 017843a's": True,
        "select1: p99 <= 017843a's": True,
        "select1: req/s >= pgweb's": False,
    }


def test_markdown_puts_every_system_beside_the_gateway() -> None:
    lines = samerun.markdown(
        [_round("gateway", "point", 1000, 9.0, 800), _round("pgweb", "point", 1200, 20, 400)],
        ["pgweb: a note"],
        None,
    )
    row = "| point | pgweb | 1,200 | 20.00 | 400 | 400-400 | 100 | 100 | 0.50x | 1.20x | 0 |"
    assert row in lines
    assert "- pgweb: a note" in lines


def test_markdown_shows_how_far_the_rounds_strayed() -> None:
    rounds = [_round("gateway", "point", 1000, 9.0, cpu) for cpu in (800, 760, 910)]
    (row,) = [line for line in samerun.markdown(rounds, [], None) if line.startswith("| point")]
    assert "| 800 | 760-910 |" in row


def test_cpu_seconds_counts_a_busy_descendant() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.5\n"
            "while time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
    try:
        time.sleep(1.5)
        busy = samerun.cpu_seconds(child.pid)
        assert busy >= 0.45
        # This process's tree holds the child: its CPU and ours.
        assert samerun.cpu_seconds(os.getpid()) >= busy + 0.9 * time.process_time()
    finally:
        child.kill()
        child.wait()


def test_cpu_split_tells_the_kernels_time_from_the_programs() -> None:
    """Half a second of Python arithmetic is user time; half a second of getrandom(2) calls
    is mostly system time. (Reading the clock is a syscall too: the loops read it rarely.)"""
    loops = {
        "user": "while time.process_time() < end: sum(range(100_000))",
        "kernel": "while time.process_time() < end: os.urandom(1 << 20)",
    }
    split = {}
    for kind, loop in loops.items():
        before = samerun.cpu_split(os.getpid())  # a reaped child's time joins its parent's
        child = subprocess.Popen(
            [sys.executable, "-c", f"import os, time\nend = time.process_time() + 0.5\n{loop}"]
        )
        child.wait(30)
        assert child.returncode == 0
        after = samerun.cpu_split(os.getpid())
        split[kind] = (after[0] - before[0], after[1] - before[1])
    assert split["user"][0] >= 0.4 and split["user"][1] < 0.2, split
    assert split["kernel"][1] >= 0.3 and split["kernel"][1] > split["kernel"][0], split


def test_cpu_seconds_keeps_a_descendant_that_ended() -> None:
    """As a postmaster reaps a backend that ended mid-round: its time stays in the sum."""
    busy = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {busy!r}])\n"
            "print('reaped', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "reaped\n"
        assert samerun.cpu_seconds(parent.pid) >= 0.45
    finally:
        parent.kill()
        parent.wait()


def test_what_starts_on_the_pinned_cpus_stays_there() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs two CPUs to pin a child to one of them")
    before = os.sched_getaffinity(0)
    with samerun.on_cpus({samerun.SERVER_CPU}):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.sched_getaffinity(child.pid) == {samerun.SERVER_CPU}
        assert os.sched_getaffinity(0) == before
        samerun.pin_tree(child.pid, samerun.other_cpus())
        assert samerun.SERVER_CPU not in os.sched_getaffinity(child.pid)
    finally:
        child.kill()
        child.wait()


def test_the_release_is_read_from_git(tmp_path: Path) -> None:
    tree = samerun.export_release("HEAD", tmp_path)
    assert (tree / "app" / "server.py").is_file()
    with pytest.raises(SystemExit, match="cannot read release no-such-revision"):
        samerun.export_release("no-such-revision", tmp_path)


def test_pgweb_gets_its_id_in_the_sql_as_a_form_field() -> None:
    point = next(w for w in WORKLOADS if w.key == "point")
    assert point.pgweb_body() == (
        "query=select+id%2C+name%2C+score%2C+created_at+from+items+where+id+%3D+{ID}"
    )


def test_components_sum_self_time_by_package(tmp_path: Path) -> None:
    raw = tmp_path / "profile.raw"
    raw.write_text(
        "run (gunicorn/workers/base_async.py:1);view (app/routes.py:2) 3\n"
        "run (gunicorn/workers/base_async.py:1);parse (gunicorn/http/message.py:9) 1\n"
        "run (gunicorn/workers/base_async.py:1);emit (logging/__init__.py:5) 1\n"
        "cut (app/rou\n"
    )
    lines = profile.components(raw).splitlines()
    assert lines == [
        "self time by component (5 samples holding the GIL):",
        " 60.0%  app.routes",
        " 20.0%  gunicorn (the worker process)",
        " 20.0%  logging (the access log)",
    ]
