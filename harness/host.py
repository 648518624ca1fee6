"""Make this host able to run kind: a Docker engine that can run privileged containers.

CI machines have the docker CLI but no engine, no systemd as PID 1, and a
capability bounding set without CAP_SYS_RESOURCE (see shared/notes). On a
Debian-like host where we are root this module fixes all three; anywhere else
it says what to install instead of guessing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from harness.steps import HarnessError, Step, probe, say, step

DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/pg-gateway-dockerd.log")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
RUNTIME_NAME = "runc-drop-sys-resource"
RUNTIME_PATH = Path("/usr/local/libexec/pg-gateway") / RUNTIME_NAME
RUNTIME_TEMPLATE = Path(__file__).with_name("files") / RUNTIME_NAME
CAPS_ERROR = "unable to apply caps"
DOCKER_START_TIMEOUT = 60.0


def _can_self_provision() -> bool:
    return (
        os.geteuid() == 0
        and Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
    )


def apt_install(packages: list[str]) -> None:
    """Install Debian packages (root on Debian only; the caller checked)."""
    with step(f"apt-get install {' '.join(packages)}") as current:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        current.run(["apt-get", "update"], env=env, timeout=600)
        current.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            env=env,
            timeout=1200,
        )


def require_commands(commands: Mapping[str, str]) -> dict[str, str]:
    """Resolve commands (name -> Debian package), installing missing ones where we may."""
    missing = [name for name in commands if shutil.which(name) is None]
    if missing:
        packages = sorted({commands[name] for name in missing})
        if not _can_self_provision():
            raise HarnessError(
                f"missing commands {', '.join(missing)}: install the packages {', '.join(packages)}"
            )
        apt_install(packages)
    found = {name: shutil.which(name) for name in commands}
    still_missing = [name for name, path in found.items() if path is None]
    if still_missing:
        raise HarnessError(f"{', '.join(still_missing)} still missing after installing packages")
    return {name: str(path) for name, path in found.items()}


def docker_answers() -> bool:
    return probe(["docker", "info"], timeout=20).returncode == 0


def _start_dockerd(current_step: Step) -> None:
    say(f"    starting dockerd in the background (log: {DOCKERD_LOG})")
    current_step.log(f"starting dockerd, log at {DOCKERD_LOG}")
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(
            ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + DOCKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(1)
    raise HarnessError(
        f"dockerd did not answer `docker info` within {DOCKER_START_TIMEOUT:.0f}s; "
        f"see {DOCKERD_LOG}"
    )


def _stop_dockerd() -> None:
    """Stop the dockerd whose pid file we know (the one we started)."""
    if not DOCKERD_PIDFILE.exists():
        raise HarnessError(
            "dockerd must restart to use the runtime wrapper, but its pid file is missing"
        )
    pid = int(DOCKERD_PIDFILE.read_text().strip())
    os.kill(pid, 15)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    raise HarnessError(f"dockerd (pid {pid}) did not stop within 60s")


def ensure_engine() -> None:
    """Have a Docker engine answering, installing and starting one if needed."""
    if docker_answers():
        return
    if not _can_self_provision():
        raise HarnessError(
            "no Docker engine answers `docker info`. Install and start Docker "
            "(Debian/Ubuntu: `apt-get install docker.io`; "
            "elsewhere Docker Engine or Docker Desktop), "
            "make sure your user may use it, then run this again."
        )
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"])
    with step("start Docker engine") as current:
        _start_dockerd(current)


def _privileged_probe(image: str) -> subprocess.CompletedProcess[str]:
    return probe(["docker", "run", "--rm", "--privileged", image, "true"], timeout=120)


def _install_runtime_wrapper(current_step: Step) -> None:
    real_runc = shutil.which("runc")
    if real_runc is None:
        raise HarnessError("runc not found; it comes with Debian's docker.io package")
    RUNTIME_PATH.parent.mkdir(parents=True, exist_ok=True)
    RUNTIME_PATH.write_text(RUNTIME_TEMPLATE.read_text().replace("@REAL_RUNC@", real_runc))
    RUNTIME_PATH.chmod(0o755)
    config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    config.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": str(RUNTIME_PATH)}
    config["default-runtime"] = RUNTIME_NAME
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(config, indent=2) + "\n")
    current_step.log(f"wrote {RUNTIME_PATH} and {DAEMON_JSON}; restarting dockerd")
    _stop_dockerd()
    _start_dockerd(current_step)


def ensure_privileged(image: str) -> None:
    """Make `docker run --privileged` work, the way kind runs its nodes."""
    result = _privileged_probe(image)
    if result.returncode == 0:
        return
    if CAPS_ERROR not in result.stderr:
        raise HarnessError(f"a privileged probe container failed: {result.stderr.strip()}")
    if not _can_self_provision():
        raise HarnessError(
            "privileged containers fail with 'unable to apply caps' (CAP_SYS_RESOURCE is not "
            f"in this host's bounding set). Register {RUNTIME_TEMPLATE} as dockerd's default "
            "runtime (see shared/notes)."
        )
    with step("install OCI runtime wrapper dropping CAP_SYS_RESOURCE") as current:
        _install_runtime_wrapper(current)
        result = _privileged_probe(image)
        current.log(result.stdout + result.stderr)
        if result.returncode != 0:
            raise HarnessError(
                f"privileged probe still fails with the runtime wrapper: {result.stderr.strip()}"
            )
