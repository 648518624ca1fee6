"""How the manifests run PostgreSQL, read from the StatefulSet, for local servers to match.

The StatefulSet is the one home of these facts: its `-c` server settings, the address space
its command caps every PostgreSQL process at (`ulimit -v "$MAX_PROCESS_MEMORY_KB"`), and the
container's memory limit. The integration tests and `nox -s serve` start their servers with
the same, and a test reproduces the memory limit with a cgroup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import paths
from harness.local.postgres import LocalPostgres

STATEFULSET = paths.MANIFESTS_DIR / "base" / "postgres" / "statefulset.yaml"
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


@dataclass(frozen=True)
class DeployedServer:
    settings: dict[str, str]
    max_process_memory_kb: int | None
    memory_limit_bytes: int


def _container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "postgres"
    ]
    return container


def _settings(args: list[str]) -> dict[str, str]:
    """`postgres -c name=value ...` as a mapping."""
    pairs = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def _bytes(quantity: str) -> int:
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def deployed_server() -> DeployedServer:
    container = _container(yaml.safe_load(STATEFULSET.read_text()))
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    limit = env.get("MAX_PROCESS_MEMORY_KB")
    return DeployedServer(
        settings=_settings(container.get("args", [])),
        max_process_memory_kb=int(limit) if limit else None,
        memory_limit_bytes=_bytes(container["resources"]["limits"]["memory"]),
    )


def local_server(data_dir: Path) -> LocalPostgres:
    """A local server run as the StatefulSet runs it: its settings, its memory cap."""
    deployed = deployed_server()
    return LocalPostgres(
        data_dir,
        settings=deployed.settings,
        max_process_memory_kb=deployed.max_process_memory_kb,
    )
