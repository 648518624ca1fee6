"""The gate's kind cluster: `python -m harness.cluster up|down|status`.

`ensure_cluster()` (what `up` runs) takes a bare machine to a ready cluster and reuses
whatever already exists; `load_image()` puts a local image on the node; `delete_cluster()`
(`down`) only deletes a cluster this tool created.
"""

from __future__ import annotations

from harness import names
from harness.cluster import kindtool
from harness.cluster.create import ensure_cluster, load_image, marker
from harness.cluster.node import loopback_address, published_ports
from harness.paths import kubeconfig_path
from harness.steps import HarnessError, say, step

__all__ = [
    "delete_cluster",
    "ensure_cluster",
    "kubeconfig_path",
    "load_image",
    "loopback_address",
    "published_ports",
]


def delete_cluster() -> None:
    """Delete the cluster if, and only if, this tool created it."""
    kind = kindtool.ensure_kind()
    if not kindtool.cluster_exists(kind):
        say(f"no kind cluster named {names.CLUSTER}")
        marker().unlink(missing_ok=True)
        return
    if not marker().exists():
        raise HarnessError(
            f"kind cluster {names.CLUSTER} was not created by this tool; leaving it alone"
        )
    with step(f"delete kind cluster {names.CLUSTER}") as current:
        current.run([kind, "delete", "cluster", "--name", names.CLUSTER])
    marker().unlink()
    kubeconfig_path().unlink(missing_ok=True)
