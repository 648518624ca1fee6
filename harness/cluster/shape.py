"""The kind cluster's shape, declared once: how many workers, the nodes kind makes for them,
and where PostgreSQL runs. The cluster (kindcluster, create, node), the drain checks and the
kind overlay's placement of PostgreSQL (held to POSTGRES_PLACEMENT by
tests/unit/gate/test_cluster_shape.py) all read it from here.
"""

from __future__ import annotations

import os

from harness import names
from harness.steps import HarnessError

# The cluster's shape: one control plane plus this many workers (PG_GATEWAY_WORKERS, 0-3).
# Two by default, so that the Deployment's spreading and its PodDisruptionBudget meet a real
# `kubectl drain` (docs/gate.md, "Cluster shape": its cost on 2 cores, and when to choose 0).
WORKERS_ENV = "PG_GATEWAY_WORKERS"
DEFAULT_WORKERS = 2
MAX_WORKERS = 3
# The real drain check drains two gateway nodes one after the other (the budget holding the
# second while the first's replica moves); with fewer workers it skips, saying so.
DRAINED_WORKERS = 2
CONTROL_PLANE = f"{names.CLUSTER}-control-plane"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# Where PostgreSQL runs on kind: its volume is node-local, so it is pinned to the control plane,
# which the drain checks never drain (the kind overlay's postgres-local.yaml says the same, and
# tests/unit/gate/test_cluster_shape.py holds the two together).
POSTGRES_PLACEMENT = {
    "nodeSelector": {CONTROL_PLANE_LABEL: ""},
    "tolerations": [{"key": CONTROL_PLANE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}


def worker_count(value: str | None = None) -> int:
    """The workers asked for: `value`, else $PG_GATEWAY_WORKERS, else DEFAULT_WORKERS."""
    text = (os.environ.get(WORKERS_ENV, "") if value is None else value).strip()
    if not text:
        return DEFAULT_WORKERS
    if not text.isdigit() or int(text) > MAX_WORKERS:
        raise HarnessError(
            f"{WORKERS_ENV}={text!r}: the number of worker nodes must be 0 to {MAX_WORKERS}"
        )
    return int(text)


def node_names(workers: int) -> list[str]:
    """The node containers kind makes for that shape, in `kind get nodes` order, sorted."""
    suffixes = ["", *(str(n) for n in range(2, workers + 1))]
    nodes = [CONTROL_PLANE]
    nodes += [f"{names.CLUSTER}-worker{suffix}" for suffix in suffixes[:workers]]
    return sorted(nodes)
