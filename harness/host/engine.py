"""Make this host able to run kind: a Docker engine that can run privileged containers.

CI machines have the docker CLI but no engine, no systemd as PID 1, and a
capability bounding set without CAP_SYS_RESOURCE (see docs/operations.md, "Host setup"). On a
Debian-like host where we are root this module fixes all three, and records
every change with `harness.host.machine` so `cluster purge` can undo exactly those;
anywhere else it says what to install instead of guessing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.host import machine
from harness.steps import HarnessError, Step, probe, say, step

DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/pg-gateway-dockerd.log")
RUNTIME_NAME = "runc-drop-sys-resource"
RUNTIME_PATH = Path("/usr/local/libexec/pg-gateway") / RUNTIME_NAME
RUNTIME_TEMPLATE = Path(__file__).with_name("files") / RUNTIME_NAME
CAPS_ERROR = "unable to apply caps"
CAP_SYS_RESOURCE = 24
DOCKER_START_TIMEOUT = 60.0
DOCKER_STOP_TIMEOUT = 60.0


def docker_answers() -> bool:
    return probe(["docker", "info"], timeout=20).returncode == 0


def lacks_cap_sys_resource(status: str | None = None) -> bool:
    """True when CAP_SYS_RESOURCE is missing from this process's bounding set (CapBnd)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    bounding = next(line.split()[1] for line in text.splitlines() if line.startswith("CapBnd:"))
    return not (int(bounding, 16) >> CAP_SYS_RESOURCE) & 1


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a live process (field 22 of /proc/PID/stat), or None.

    A pid alone can be reused; pid plus start time names one process. A zombie (exited,
    not yet reaped by its parent) counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, *fields = stat.rpartition(")")[2].split()
    return None if state in {"Z", "X"} else fields[18]


def stop_process(pid: int, timeout_s: float) -> None:
    """SIGTERM a process and wait until it is gone, reaping it if it is our child.

    `os.kill(pid, 0)` succeeds on a zombie, so it cannot tell that a child has exited; the
    harness starts dockerd as its own child, and waiting on it that way never ended.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            os.waitpid(pid, os.WNOHANG)
        if process_start_time(pid) is None:
            return
        time.sleep(0.2)
    raise HarnessError(f"process {pid} did not stop within {timeout_s:.0f}s of SIGTERM")


def _start_dockerd(current_step: Step) -> None:
    say(f"    starting dockerd in the background (log: {DOCKERD_LOG})")
    current_step.log(f"starting dockerd, log at {DOCKERD_LOG}")
    with DOCKERD_LOG.open("ab") as log:
        dockerd = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    machine.record(dockerd={"pid": dockerd.pid, "start_time": process_start_time(dockerd.pid)})
    deadline = time.monotonic() + DOCKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if docker_answers():
            return
        if dockerd.poll() is not None:
            raise HarnessError(
                f"dockerd exited with status {dockerd.returncode}; see {DOCKERD_LOG}"
            )
        time.sleep(1)
    raise HarnessError(
        f"dockerd did not answer `docker info` within {DOCKER_START_TIMEOUT:.0f}s; "
        f"see {DOCKERD_LOG}"
    )


def started_dockerd_pid(changes: dict[str, Any] | None = None) -> int | None:
    """The pid of the dockerd this harness started (per `changes`, by default the record),
    if that very process still runs."""
    recorded = machine.load_changes() if changes is None else changes
    started = recorded.get("dockerd") or {}
    pid = started.get("pid")
    if pid and started.get("start_time") and process_start_time(pid) == started["start_time"]:
        return int(pid)
    return None


def stop_started_dockerd() -> bool:
    """Stop the dockerd the harness started (never another one); True if it stopped one."""
    pid = started_dockerd_pid()
    if pid is None:
        return False
    stop_process(pid, DOCKER_STOP_TIMEOUT)
    return True


def _write_runtime_wrapper(current_step: Step) -> None:
    """Register the wrapper as dockerd's default runtime; dockerd reads it when it starts."""
    real_runc = shutil.which("runc")
    if real_runc is None:
        raise HarnessError("runc not found; it comes with Debian's docker.io package")
    made = [d for d in (*reversed(RUNTIME_PATH.parents), DAEMON_JSON.parent) if not d.exists()]
    RUNTIME_PATH.parent.mkdir(parents=True, exist_ok=True)
    RUNTIME_PATH.write_text(RUNTIME_TEMPLATE.read_text().replace("@REAL_RUNC@", real_runc))
    RUNTIME_PATH.chmod(0o755)
    before = DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None
    if "daemon_json_before" not in machine.load_changes():
        machine.record(
            daemon_json_before=before,
            runtime_wrapper=str(RUNTIME_PATH),
            created_dirs=[str(directory) for directory in made],
        )
    config = json.loads(before) if before else {}
    config.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": str(RUNTIME_PATH)}
    config["default-runtime"] = RUNTIME_NAME
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(config, indent=2) + "\n")
    current_step.log(f"wrote {RUNTIME_PATH} and {DAEMON_JSON}")


def _wrapper_configured() -> bool:
    if not DAEMON_JSON.exists():
        return False
    return json.loads(DAEMON_JSON.read_text()).get("default-runtime") == RUNTIME_NAME


def ensure_engine() -> None:
    """Have a Docker engine answering, installing and starting one if needed.

    On a host without CAP_SYS_RESOURCE the runtime wrapper is registered before dockerd
    starts, so a fresh machine starts dockerd exactly once.
    """
    if docker_answers():
        return
    if not machine.can_self_provision():
        raise HarnessError(
            "no Docker engine answers `docker info`. Install and start Docker "
            "(Debian/Ubuntu: `apt-get install docker.io`; "
            "elsewhere Docker Engine or Docker Desktop), "
            "make sure your user may use it, then run this again."
        )
    if shutil.which("dockerd") is None:
        machine.apt_install(["docker.io"])
    with step("start Docker engine") as current:
        if lacks_cap_sys_resource() and not _wrapper_configured():
            current.log("CAP_SYS_RESOURCE is not in the bounding set: registering the wrapper")
            _write_runtime_wrapper(current)
        _start_dockerd(current)


def _privileged_probe(image: str) -> subprocess.CompletedProcess[str]:
    return probe(["docker", "run", "--rm", "--privileged", image, "true"], timeout=120)


def ensure_privileged(image: str) -> None:
    """Make `docker run --privileged` work, the way kind runs its nodes."""
    result = _privileged_probe(image)
    if result.returncode == 0:
        return
    if CAPS_ERROR not in result.stderr:
        raise HarnessError(f"a privileged probe container failed: {result.stderr.strip()}")
    if not machine.can_self_provision() or started_dockerd_pid() is None:
        raise HarnessError(
            "privileged containers fail with 'unable to apply caps' (CAP_SYS_RESOURCE is not "
            f"in this host's bounding set). Register a copy of {RUNTIME_TEMPLATE} (@REAL_RUNC@ "
            "replaced by runc's path) as dockerd's default runtime and restart dockerd "
            "(docs/operations.md, 'Host setup')."
        )
    with step("install OCI runtime wrapper dropping CAP_SYS_RESOURCE") as current:
        _write_runtime_wrapper(current)
        current.log("restarting the dockerd this harness started")
        stop_started_dockerd()
        _start_dockerd(current)
        result = _privileged_probe(image)
        current.log(result.stdout + result.stderr)
        if result.returncode != 0:
            raise HarnessError(
                f"privileged probe still fails with the runtime wrapper: {result.stderr.strip()}"
            )
