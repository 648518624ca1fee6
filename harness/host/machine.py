"""What the harness changes on this machine, and the record of it.

Where it may (root on a Debian-like machine) the harness installs the packages it needs:
docker.io for the cluster, debootstrap, gcc and busybox-static for the offline builds. Every
change goes into `HOST_CHANGES`, so `cluster purge` can undo exactly those.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.steps import HarnessError, probe, step

# What the harness changed on this machine (packages, daemon.json, a dockerd it started).
HOST_CHANGES = Path("/var/lib/pg-gateway/host-changes.json")


def can_self_provision() -> bool:
    """Root on a Debian-like machine: the harness may install and configure what it needs."""
    return (
        os.geteuid() == 0
        and Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
    )


def load_changes(path: Path | None = None) -> dict[str, Any]:
    """The record of host changes (at `path`, for tests); empty when the harness changed
    nothing here."""
    try:
        return json.loads((path or HOST_CHANGES).read_text())
    except FileNotFoundError:
        return {}


def record(**changes: Any) -> None:
    """Add changes to the record (a key written again is replaced)."""
    changed = load_changes()
    changed.update(changes)
    HOST_CHANGES.parent.mkdir(parents=True, exist_ok=True)
    HOST_CHANGES.write_text(json.dumps(changed, indent=2) + "\n")


def installed(package: str) -> bool:
    status = probe(["dpkg-query", "-W", "-f=${Status}", package])
    return status.returncode == 0 and status.stdout.endswith(" installed")


def apt_install(packages: list[str]) -> None:
    """Install Debian packages (root on Debian only; the caller checked)."""
    new = [package for package in packages if not installed(package)]
    with step(f"apt-get install {' '.join(packages)}") as current:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        current.run(["apt-get", "update"], env=env, timeout=600)
        current.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            env=env,
            timeout=1200,
        )
    recorded = load_changes().get("apt_packages", [])
    record(apt_packages=sorted(set(recorded) | set(new)))


def require_commands(commands: Mapping[str, str]) -> dict[str, str]:
    """Resolve commands (name -> Debian package), installing missing ones where we may."""
    missing = [name for name in commands if shutil.which(name) is None]
    if missing:
        packages = sorted({commands[name] for name in missing})
        if not can_self_provision():
            raise HarnessError(
                f"missing commands {', '.join(missing)}: install the packages {', '.join(packages)}"
            )
        apt_install(packages)
    found = {name: shutil.which(name) for name in commands}
    still_missing = [name for name, path in found.items() if path is None]
    if still_missing:
        raise HarnessError(f"{', '.join(still_missing)} still missing after installing packages")
    return {name: str(path) for name, path in found.items()}
