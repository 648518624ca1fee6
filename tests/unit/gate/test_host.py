"""Host provisioning logic that decides whether a fresh machine's first run works."""

from __future__ import annotations

import subprocess
import time

import pytest

from harness import steps
from harness.host import engine, machine
from harness.steps import HarnessError

STATUS_WITH = "Name:\tx\nCapBnd:\t000001ffffffffff\n"
STATUS_WITHOUT = "Name:\tx\nCapBnd:\t000001fffeffffff\n"  # bit 24 cleared, as on CI machines


def test_missing_cap_sys_resource_is_read_from_the_bounding_set() -> None:
    assert engine.lacks_cap_sys_resource(STATUS_WITHOUT)
    assert not engine.lacks_cap_sys_resource(STATUS_WITH)


def test_stopping_an_unreaped_child_returns_once_it_exited() -> None:
    """The first-run failure: dockerd is the harness's own child, and after SIGTERM it is a
    zombie until reaped, which `os.kill(pid, 0)` reports as alive for ever."""
    child = subprocess.Popen(["sleep", "60"])
    started = time.monotonic()
    engine.stop_process(child.pid, timeout_s=10)
    assert time.monotonic() - started < 5
    assert engine.process_start_time(child.pid) is None


def test_a_process_that_ignores_sigterm_is_reported_not_waited_for_for_ever() -> None:
    child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30"])
    time.sleep(0.3)  # let the shell install its trap
    try:
        with pytest.raises(HarnessError, match="did not stop"):
            engine.stop_process(child.pid, timeout_s=1)
    finally:
        child.kill()
        child.wait()


def test_a_recorded_dockerd_whose_pid_was_reused_is_not_ours(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(machine, "HOST_CHANGES", tmp_path / "changes.json")
    child = subprocess.Popen(["sleep", "60"])
    try:
        machine.record(dockerd={"pid": child.pid, "start_time": "1"})  # another process's start
        assert engine.started_dockerd_pid() is None
        machine.record(
            dockerd={"pid": child.pid, "start_time": engine.process_start_time(child.pid)}
        )
        assert engine.started_dockerd_pid() == child.pid
    finally:
        child.kill()
        child.wait()


def test_the_wrapper_records_what_it_changes_once(tmp_path, monkeypatch) -> None:
    """What purge needs to restore: daemon.json as it was (here: none) and the dirs made."""
    runc = tmp_path / "bin" / "runc"
    runc.parent.mkdir()
    runc.write_text("#!/bin/sh\n")
    runc.chmod(0o755)
    monkeypatch.setenv("PATH", str(runc.parent))
    monkeypatch.setattr(machine, "HOST_CHANGES", tmp_path / "changes.json")
    monkeypatch.setattr(engine, "DAEMON_JSON", tmp_path / "etc/docker/daemon.json")
    monkeypatch.setattr(engine, "RUNTIME_PATH", tmp_path / "libexec/pg-gateway/wrapper")
    with steps.step("wrapper") as current:
        engine._write_runtime_wrapper(current)
        engine._write_runtime_wrapper(current)  # a second time: the record keeps the first
    changes = machine.load_changes()
    assert changes["daemon_json_before"] is None
    made = {str(tmp_path / "libexec"), str(tmp_path / "libexec/pg-gateway")}
    assert set(changes["created_dirs"]) == {*made, str(tmp_path / "etc/docker")}
    assert str(runc) in engine.RUNTIME_PATH.read_text()
    assert engine._wrapper_configured()
