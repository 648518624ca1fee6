"""`up`: take a bare machine to a ready kind cluster, reusing whatever already exists.

Host engine, kind, node image, cluster, kube-system workloads, then the images the caller
wants loaded. A cluster created here is marked, so `down` never deletes another one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness import build, names, paths
from harness.cluster import host, kindtool, node
from harness.paths import kubeconfig_path
from harness.steps import format_seconds, say, step

CREATE_WAIT = "180s"


def marker() -> Path:
    """Present only for a cluster this tool created, so `down` never deletes another."""
    return paths.cache_dir() / "clusters" / names.CLUSTER


def _kind_config(image: str) -> str:
    mappings = "".join(
        f"  - containerPort: {port}\n    hostPort: {port}\n"
        '    listenAddress: "127.0.0.1"\n    protocol: TCP\n'
        for port in names.PUBLISHED_PORTS
    )
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {names.CLUSTER}
nodes:
- role: control-plane
  image: {image}
  extraPortMappings:
{mappings}"""


def provision_host() -> None:
    """A Docker engine that runs privileged containers, as kind's nodes are."""
    host.ensure_engine()
    host.ensure_privileged(build.busybox_image())


def ensure_cluster(images: tuple[str, ...] = ()) -> Path:
    """Create or reuse the cluster, load images into it, return its kubeconfig path."""
    started = time.monotonic()
    provision_host()
    kind = kindtool.ensure_kind()
    if kindtool.cluster_exists(kind):
        with step(f"reuse kind cluster {names.CLUSTER}") as current:
            node.ensure_control_plane_answers(current)
            node.check_port_mappings()
            current.run(
                [
                    kind,
                    "export",
                    "kubeconfig",
                    "--name",
                    names.CLUSTER,
                    "--kubeconfig",
                    kubeconfig_path(),
                ]
            )
            node.wait_for_workloads(current)
    else:
        image = build.node_image()
        with step(f"create kind cluster {names.CLUSTER} ({image})") as current:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
                config.write(_kind_config(image))
            marker().parent.mkdir(parents=True, exist_ok=True)
            marker().write_text(image + "\n")
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
            node.wait_for_workloads(current)
    for image in images:
        load_image(image, kind=kind)
    say(
        f"cluster {names.CLUSTER} ready in {format_seconds(time.monotonic() - started)}; "
        f"kubeconfig: {kubeconfig_path()}"
    )
    return kubeconfig_path()


def load_image(image: str, *, kind: str | None = None) -> None:
    """`kind load docker-image`: the only way a local image reaches the node offline."""
    kind = kind or kindtool.ensure_kind()
    with step(f"kind load docker-image {image}") as current:
        current.run([kind, "load", "docker-image", image, "--name", names.CLUSTER])
