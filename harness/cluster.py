"""The gate's kind cluster: `python -m harness.cluster up|down|status`.

`up` takes a bare machine to a ready cluster (host engine, kind, node image,
cluster, kube-system workloads) and reuses whatever already exists; `down`
only deletes a cluster this tool created. The same steps are importable for
the e2e tests: ensure_cluster(), load_image(), kubeconfig_path().
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from harness import build, host, kindtool, paths, versions
from harness.build import docker
from harness.paths import kubeconfig_path
from harness.steps import HarnessError, Step, format_seconds, probe, run_cli, say, step

CREATE_WAIT = "180s"
ROLLOUT_TIMEOUT = "180s"
RESTART_TIMEOUT = 120
KUBE_SYSTEM_WORKLOADS = ("deployment/coredns", "daemonset/kindnet", "daemonset/kube-proxy")
STORAGE_WORKLOAD = ("-n", "local-path-storage", "deployment/local-path-provisioner")
SYSTEM_NAMESPACES = ("kube-system", "local-path-storage")

__all__ = ["cluster_exists", "delete_cluster", "ensure_cluster", "kubeconfig_path", "load_image"]


def _control_plane() -> str:
    return f"{versions.CLUSTER_NAME}-control-plane"


def _marker() -> Path:
    """Present only for a cluster this tool created, so `down` never deletes another."""
    return paths.cache_dir() / "clusters" / versions.CLUSTER_NAME


def _kind_config(image: str) -> str:
    mappings = "".join(
        f"  - containerPort: {port}\n    hostPort: {port}\n"
        '    listenAddress: "127.0.0.1"\n    protocol: TCP\n'
        for port in (versions.NODE_PORT, versions.SELF_TEST_NODE_PORT)
    )
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {versions.CLUSTER_NAME}
nodes:
- role: control-plane
  image: {image}
  extraPortMappings:
{mappings}"""


def provision_host() -> None:
    """A Docker engine that runs privileged containers, as kind's nodes are."""
    host.ensure_engine()
    host.ensure_privileged(build.busybox_image())


def cluster_exists(kind: str) -> bool:
    result = probe([kind, "get", "clusters"])
    return versions.CLUSTER_NAME in result.stdout.split()


def _node_kubectl_argv(*args: str) -> list[str]:
    """kubectl inside the control-plane node: works whatever the host has installed."""
    admin = "--kubeconfig=/etc/kubernetes/admin.conf"
    return ["docker", "exec", _control_plane(), "kubectl", admin, *args]


def _node_kubectl(current: Step, *args: str) -> str:
    return current.output(_node_kubectl_argv(*args))


def _wait_for_workloads(current: Step) -> None:
    for workload in KUBE_SYSTEM_WORKLOADS:
        _node_kubectl(
            current,
            "-n",
            "kube-system",
            "rollout",
            "status",
            workload,
            f"--timeout={ROLLOUT_TIMEOUT}",
        )
    _node_kubectl(current, "rollout", "status", *STORAGE_WORKLOAD, f"--timeout={ROLLOUT_TIMEOUT}")
    _node_kubectl(
        current, "wait", "--for=condition=Ready", "node", "--all", f"--timeout={ROLLOUT_TIMEOUT}"
    )
    _wait_system_pods_ready_since_boot(current)


def _wait_system_pods_ready_since_boot(current: Step) -> None:
    """Right after the node container restarts, the API still shows the pods of the
    previous boot as Ready (with IPs that are gone): wait for readiness of this boot."""
    started = probe(["docker", "inspect", "--format", "{{.State.StartedAt}}", _control_plane()])
    boot = datetime.fromisoformat(started.stdout.strip()[:19] + "+00:00")
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        listing = probe(_node_kubectl_argv("get", "pods", "--all-namespaces", "-o", "json"))
        pods = json.loads(listing.stdout)["items"] if listing.returncode == 0 else []
        stale = [
            pod["metadata"]["name"]
            for pod in pods
            if pod["metadata"]["namespace"] in SYSTEM_NAMESPACES and not _ready_since(pod, boot)
        ]
        if pods and not stale:
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"system pods not ready within {RESTART_TIMEOUT}s: {stale}")
        time.sleep(2)


def _ready_since(pod: dict, boot: datetime) -> bool:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            changed = datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00"))
            return condition["status"] == "True" and changed >= boot
    return False


def _ensure_control_plane_answers(current: Step) -> None:
    """After a host or dockerd restart the node may be stopped or still booting."""
    running = probe(["docker", "inspect", "--format", "{{.State.Running}}", _control_plane()])
    if running.stdout.strip() == "false":
        current.run(["docker", "start", _control_plane()])
    deadline = time.monotonic() + RESTART_TIMEOUT
    while probe(_node_kubectl_argv("get", "--raw=/readyz")).returncode != 0:
        if time.monotonic() > deadline:
            raise HarnessError(f"the control plane did not answer within {RESTART_TIMEOUT}s")
        time.sleep(2)


def published_ports() -> dict[int, str]:
    """Container port -> host address the node publishes it on (`docker port`)."""
    published: dict[int, str] = {}
    for line in probe(["docker", "port", _control_plane()]).stdout.splitlines():
        container, _, host_address = line.partition(" -> ")
        published.setdefault(int(container.split("/")[0]), host_address.strip())
    return published


def _check_port_mappings() -> None:
    """A reused cluster must publish the ports this version of the harness maps."""
    published = published_ports()
    for port in (versions.NODE_PORT, versions.SELF_TEST_NODE_PORT):
        if published.get(port) != f"127.0.0.1:{port}":
            raise HarnessError(
                f"cluster {versions.CLUSTER_NAME} does not publish 127.0.0.1:{port} (made by an "
                "older harness?): run `python -m harness.cluster down` and `up` again"
            )


def ensure_cluster(images: tuple[str, ...] = ()) -> Path:
    """Create or reuse the cluster, load images into it, return its kubeconfig path."""
    started = time.monotonic()
    provision_host()
    kind = kindtool.ensure_kind()
    if cluster_exists(kind):
        with step(f"reuse kind cluster {versions.CLUSTER_NAME}") as current:
            _ensure_control_plane_answers(current)
            _check_port_mappings()
            current.run(
                [
                    kind,
                    "export",
                    "kubeconfig",
                    "--name",
                    versions.CLUSTER_NAME,
                    "--kubeconfig",
                    kubeconfig_path(),
                ]
            )
            _wait_for_workloads(current)
    else:
        image = build.node_image()
        with step(f"create kind cluster {versions.CLUSTER_NAME} ({image})") as current:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
                config.write(_kind_config(image))
            _marker().parent.mkdir(parents=True, exist_ok=True)
            _marker().write_text(image + "\n")
            current.run(
                [
                    kind,
                    "create",
                    "cluster",
                    "--config",
                    config.name,
                    "--kubeconfig",
                    kubeconfig_path(),
                    "--wait",
                    CREATE_WAIT,
                ]
            )
            Path(config.name).unlink()
            _wait_for_workloads(current)
    for image in images:
        load_image(image, kind=kind)
    say(
        f"cluster {versions.CLUSTER_NAME} ready in {format_seconds(time.monotonic() - started)}; "
        f"kubeconfig: {kubeconfig_path()}"
    )
    return kubeconfig_path()


def load_image(image: str, *, kind: str | None = None) -> None:
    """`kind load docker-image`: the only way a local image reaches the node offline."""
    kind = kind or kindtool.ensure_kind()
    with step(f"kind load docker-image {image}") as current:
        current.run([kind, "load", "docker-image", image, "--name", versions.CLUSTER_NAME])


def delete_cluster() -> None:
    """Delete the cluster if, and only if, this tool created it."""
    kind = kindtool.ensure_kind()
    if not cluster_exists(kind):
        say(f"no kind cluster named {versions.CLUSTER_NAME}")
        _marker().unlink(missing_ok=True)
        return
    if not _marker().exists():
        raise HarnessError(
            f"kind cluster {versions.CLUSTER_NAME} was not created by this tool; leaving it alone"
        )
    with step(f"delete kind cluster {versions.CLUSTER_NAME}") as current:
        current.run([kind, "delete", "cluster", "--name", versions.CLUSTER_NAME])
    _marker().unlink()
    kubeconfig_path().unlink(missing_ok=True)


def status() -> int:
    """Report each layer; exit code 0 only when the cluster answers."""
    if not host.docker_answers():
        print("docker: no engine answers (`up` installs/starts one where it can)")
        return 1
    print("docker: engine answers")
    kind = kindtool.find_kind()
    if kind is None:
        print(f"kind {versions.KIND_VERSION}: not installed (`up` builds it)")
        return 1
    print(f"kind: {kind} ({versions.KIND_VERSION})")
    for image in (build.node_image_tag(), versions.KINDEST_NODE_IMAGE):
        found = "present" if docker.image_exists(image) else "absent"
        print(f"node image {image}: {found}")
    if not cluster_exists(kind):
        print(f"cluster {versions.CLUSTER_NAME}: absent")
        return 1
    owner = "created by this tool" if _marker().exists() else "NOT created by this tool"
    print(f"cluster {versions.CLUSTER_NAME}: present, {owner}; kubeconfig: {kubeconfig_path()}")
    nodes = probe(_node_kubectl_argv("get", "nodes", "-o", "wide"))
    print(nodes.stdout or nodes.stderr)
    return nodes.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="IMAGE",
        help="local docker image to load into the cluster (repeatable; up only)",
    )
    args = parser.parse_args(argv)

    def up() -> None:
        ensure_cluster(tuple(args.load))

    actions: dict[str, Callable[[], int | None]] = {
        "up": up,
        "down": delete_cluster,
        "status": status,
    }
    return run_cli(actions[args.command])


if __name__ == "__main__":
    sys.exit(main())
