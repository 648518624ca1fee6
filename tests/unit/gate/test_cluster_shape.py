"""The cluster's shape (harness/cluster/shape.py) and the manifests that assume it agree:
PostgreSQL placed on kind where the shape says (the node the drain checks never drain), and
as many gateway replicas as the real drain check drains workers."""

from __future__ import annotations

from typing import Any

import pytest

from harness.cluster import shape
from harness.manifests.render import render
from harness.paths import MANIFESTS_DIR


@pytest.fixture(scope="module")
def kind_objects() -> dict[str, dict[str, Any]]:
    return {r.ref: r.body for r in render(MANIFESTS_DIR / "overlays" / "kind")}


def placement(statefulset: dict[str, Any]) -> dict[str, Any]:
    pod = statefulset["spec"]["template"]["spec"]
    return {key: pod.get(key) for key in shape.POSTGRES_PLACEMENT}


def test_postgres_runs_where_the_shape_places_it(kind_objects) -> None:
    assert placement(kind_objects["StatefulSet/postgres"]) == shape.POSTGRES_PLACEMENT


def test_a_postgres_placed_elsewhere_would_be_seen(kind_objects) -> None:
    moved = {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}}
    assert placement(moved) != shape.POSTGRES_PLACEMENT


def test_one_gateway_replica_per_drained_worker(kind_objects) -> None:
    """Each drained worker holds one replica (the drain check asserts they start apart)."""
    assert kind_objects["Deployment/pg-gateway"]["spec"]["replicas"] == shape.DRAINED_WORKERS


def test_the_default_cluster_has_the_workers_the_drain_needs() -> None:
    assert shape.DEFAULT_WORKERS >= shape.DRAINED_WORKERS
    assert shape.CONTROL_PLANE in shape.node_names(shape.DEFAULT_WORKERS)
