"""Everything worth reading after a failed e2e run, saved where the failure message says.

Each command's output goes to its own file; a command that fails (the namespace may be
half gone) writes its error there instead, so collecting never hides the real failure.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import names
from harness.cluster import kindtool
from harness.steps import probe

COMMAND_TIMEOUT_S = 60
KIND_LOGS_TIMEOUT_S = 300


def _save(path: Path, argv: list[str]) -> None:
    result = probe(argv, timeout=COMMAND_TIMEOUT_S)
    text = result.stdout
    if result.returncode != 0:
        text += f"\n# {' '.join(argv)} exited {result.returncode}\n{result.stderr}"
    path.write_text(text)


def collect(namespace: str, kubeconfig: Path, directory: Path) -> Path:
    """Describe, logs (also --previous), sorted events, endpoints, rollout history, kind logs."""
    directory.mkdir(parents=True, exist_ok=True)
    kubectl = ["kubectl", f"--kubeconfig={kubeconfig}", "-n", namespace]
    _save(directory / "pods.txt", [*kubectl, "get", "pods", "-o", "wide"])
    _save(directory / "describe.txt", [*kubectl, "describe", "all,pvc,pdb,networkpolicy"])
    _save(
        directory / "events.txt",
        [*kubectl, "get", "events", "--sort-by=.metadata.creationTimestamp"],
    )
    _save(directory / "endpoints.txt", [*kubectl, "get", "endpointslices", "-o", "wide"])
    _save(
        directory / "rollout-history.txt",
        [*kubectl, "rollout", "history", f"deployment/{names.GATEWAY}"],
    )
    pods = probe([*kubectl, "get", "pods", "-o", "json"], timeout=COMMAND_TIMEOUT_S)
    if pods.returncode == 0:
        for pod in json.loads(pods.stdout)["items"]:
            name = pod["metadata"]["name"]
            for container in pod["spec"]["containers"]:
                base = directory / f"logs-{name}-{container['name']}"
                logs = [*kubectl, "logs", name, "-c", container["name"]]
                _save(base.with_suffix(".txt"), logs)
                _save(base.with_name(base.name + "-previous.txt"), [*logs, "--previous"])
    probe(
        [kindtool.ensure_kind(), "export", "logs", directory / "kind", "--name", names.CLUSTER],
        timeout=KIND_LOGS_TIMEOUT_S,
    )
    return directory
