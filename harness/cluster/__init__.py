"""The gate's kind cluster: `python -m harness.cluster up|down|status|purge`.

`ensure_cluster()` (what `up` runs) takes a bare machine to a ready cluster and reuses
whatever already exists, and returns it as pytest-kind's `KindCluster` (`GateCluster`:
`load_docker_image()` puts a local image on the node); `delete_cluster()` (`down`) only
deletes a cluster this tool created; `purge` undoes everything the harness did here.
"""

from __future__ import annotations

from harness.cluster import kindtool
from harness.cluster.create import ensure_cluster
from harness.cluster.kindcluster import GateCluster
from harness.cluster.node import loopback_address, published_ports
from harness.paths import kubeconfig_path

__all__ = [
    "GateCluster",
    "delete_cluster",
    "ensure_cluster",
    "kubeconfig_path",
    "loopback_address",
    "published_ports",
]


def delete_cluster() -> None:
    """Delete the cluster if, and only if, this tool created it."""
    GateCluster(kindtool.ensure_kind()).delete()
