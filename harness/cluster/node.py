"""The cluster's node containers: kubectl inside the control plane, its published ports,
the nodes' readiness, an address on every node's loopback.

kubectl runs inside the control-plane node (`docker exec`) so the cluster can be checked
whatever the host has installed, and before a kubeconfig has been exported. The NodePorts are
published on the control plane's container only; the workers publish nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from harness import names
from harness.cluster.kindtool import NODE_LABEL
from harness.cluster.shape import CONTROL_PLANE
from harness.steps import HarnessError, Step, probe, step

ROLLOUT_TIMEOUT = "180s"
RESTART_TIMEOUT = 120
KUBE_SYSTEM_WORKLOADS = ("deployment/coredns", "daemonset/kindnet", "daemonset/kube-proxy")
STORAGE_WORKLOAD = ("-n", "local-path-storage", "deployment/local-path-provisioner")
SYSTEM_NAMESPACES = ("kube-system", "local-path-storage")


def node_containers() -> list[str]:
    """Every node container of the cluster, running or not (kind labels them), sorted."""
    listing = probe(
        ["docker", "ps", "-a", "--filter", f"label={NODE_LABEL}", "--format", "{{.Names}}"]
    )
    return sorted(listing.stdout.split())


def kubectl_argv(*args: str) -> list[str]:
    """kubectl inside the control-plane node: works whatever the host has installed."""
    admin = "--kubeconfig=/etc/kubernetes/admin.conf"
    return ["docker", "exec", CONTROL_PLANE, "kubectl", admin, *args]


def _kubectl(current: Step, *args: str) -> str:
    return current.output(kubectl_argv(*args))


def wait_for_workloads(current: Step) -> None:
    """kube-system and the storage provisioner rolled out, the node Ready, since this boot."""
    for workload in KUBE_SYSTEM_WORKLOADS:
        _kubectl(
            current,
            "-n",
            "kube-system",
            "rollout",
            "status",
            workload,
            f"--timeout={ROLLOUT_TIMEOUT}",
        )
    _kubectl(current, "rollout", "status", *STORAGE_WORKLOAD, f"--timeout={ROLLOUT_TIMEOUT}")
    _kubectl(
        current, "wait", "--for=condition=Ready", "node", "--all", f"--timeout={ROLLOUT_TIMEOUT}"
    )
    _wait_system_pods_ready_since_boot()


def _wait_system_pods_ready_since_boot() -> None:
    """Right after a node container restarts, the API still shows its pods of the previous
    boot as Ready (with IPs that are gone): wait for readiness since each pod's own node
    booted (kind names a node as its container; one node may restart without the others)."""
    boots = {node: _booted(node) for node in node_containers() or [CONTROL_PLANE]}
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        listing = probe(kubectl_argv("get", "pods", "--all-namespaces", "-o", "json"))
        pods = json.loads(listing.stdout)["items"] if listing.returncode == 0 else []
        stale = [
            pod["metadata"]["name"]
            for pod in pods
            if pod["metadata"]["namespace"] in SYSTEM_NAMESPACES
            and not _ready_since(pod, boots.get(pod.get("spec", {}).get("nodeName", "")))
        ]
        if pods and not stale:
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"system pods not ready within {RESTART_TIMEOUT}s: {stale}")
        time.sleep(2)


def _booted(container: str) -> datetime:
    started = probe(["docker", "inspect", "--format", "{{.State.StartedAt}}", container])
    return datetime.fromisoformat(started.stdout.strip()[:19] + "+00:00")


def _ready_since(pod: dict, boot: datetime | None) -> bool:
    """Ready, and (when its node's boot is known) since that boot."""
    for condition in pod.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            changed = datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))
            return condition["status"] == "True" and (boot is None or changed >= boot)
    return False


def ensure_control_plane_answers(current: Step, nodes: tuple[str, ...] = ()) -> None:
    """After a host or dockerd restart the nodes may be stopped or still booting: start
    each stopped one (`nodes`, else every node container), wait for the API server."""
    for container in nodes or node_containers() or [CONTROL_PLANE]:
        running = probe(["docker", "inspect", "--format", "{{.State.Running}}", container])
        if running.stdout.strip() == "false":
            current.run(["docker", "start", container])
    deadline = time.monotonic() + RESTART_TIMEOUT
    while probe(kubectl_argv("get", "--raw=/readyz")).returncode != 0:
        if time.monotonic() > deadline:
            raise HarnessError(f"the control plane did not answer within {RESTART_TIMEOUT}s")
        time.sleep(2)


def published_ports() -> dict[int, str]:
    """Container port -> host address the node publishes it on (`docker port`)."""
    published: dict[int, str] = {}
    for line in probe(["docker", "port", CONTROL_PLANE]).stdout.splitlines():
        container, _, host_address = line.partition(" -> ")
        published.setdefault(int(container.split("/")[0]), host_address.strip())
    return published


def check_port_mappings() -> None:
    """A reused cluster must publish the ports this version of the harness maps."""
    published = published_ports()
    for port in names.PUBLISHED_PORTS:
        if published.get(port) != f"127.0.0.1:{port}":
            raise HarnessError(
                f"cluster {names.CLUSTER} does not publish 127.0.0.1:{port} (made by an "
                "older harness?): run `python -m harness.cluster down` and `up` again"
            )


@contextmanager
def loopback_address(address: str) -> Iterator[None]:
    """`address` on every node's loopback while the block runs. A pod's connection to it
    then ends on the pod's own node, whichever that is (every kubelet port listens on all
    addresses), and never leaves it: an address such as a cloud metadata endpoint's can be
    shown blocked or reachable safely."""

    def ip_addr(verb: str) -> None:
        with step(f"ip addr {verb} {address} on every node's loopback") as current:
            for container in node_containers():
                argv = ["docker", "exec", container, "ip", "addr", verb, f"{address}/32"]
                current.run([*argv, "dev", "lo"])

    ip_addr("replace")
    try:
        yield
    finally:
        ip_addr("del")
