"""The workloads as Kubernetes reports them: rolled out, every replica Ready, and the
PodDisruptionBudget and NetworkPolicies that the manifest policy requires, in place."""

from __future__ import annotations

import pytest

from harness import names
from harness.e2e import kube
from harness.manifests import policy
from harness.manifests.render import Resource
from harness.smoke.plugin import harness_call

WORKLOADS = [("deployment", names.GATEWAY), ("statefulset", names.POSTGRES)]


def test_rollouts_complete(apps, namespace, wait) -> None:
    """Both rollouts complete (statefulset/postgres, deployment/pg-gateway)."""
    harness_call(kube.wait_statefulset_ready, apps, namespace, names.POSTGRES, wait)
    harness_call(kube.wait_rolled_out, apps, namespace, names.GATEWAY, wait)


@pytest.mark.parametrize(("kind", "name"), WORKLOADS, ids=[f"{k}/{n}" for k, n in WORKLOADS])
def test_every_replica_ready(apps, core, namespace, kind, name) -> None:
    """Every replica Ready."""
    read = {
        "deployment": apps.read_namespaced_deployment,
        "statefulset": apps.read_namespaced_stateful_set,
    }[kind]
    workload = read(name, namespace)
    wanted = workload.spec.replicas
    assert wanted, f"{kind}/{name} wants {wanted} replicas: nothing serves"
    selector = ",".join(f"{k}={v}" for k, v in workload.spec.selector.match_labels.items())
    pods = [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
        if pod.metadata.deletion_timestamp is None
    ]
    ready = sorted(pod.metadata.name for pod in pods if kube.pod_ready(pod))
    not_ready = sorted(pod.metadata.name for pod in pods if not kube.pod_ready(pod))
    assert len(ready) == wanted and not not_ready, (
        f"{kind}/{name}: {len(ready)} of {wanted} replicas Ready; not Ready: {not_ready or 'none'}"
    )


def findings(live: list[Resource], *rules: str) -> list[str]:
    """The manifest policy's findings of those rules over the live objects."""
    return [str(finding) for finding in policy.check(live) if finding.rule in rules]


def test_pod_disruption_budget(live) -> None:
    """A PodDisruptionBudget covers the gateway pods, and it is met now."""
    broken = findings(live, "workload.missing", "pdb.gateway")
    assert not broken, "; ".join(broken)
    gateway = next(res for res in live if res.kind == "Deployment" and res.name == names.GATEWAY)
    for budget in live:
        selector = budget.body.get("spec", {}).get("selector")
        if budget.kind == "PodDisruptionBudget" and policy.selector_matches(
            selector, policy.pod_labels(gateway)
        ):
            status = budget.body.get("status", {})
            healthy, needed = status.get("currentHealthy", 0), status.get("desiredHealthy", 0)
            assert healthy >= needed, (
                f"{budget.ref}: {healthy} healthy gateway pods of {needed} needed: "
                "a node drain would be refused"
            )


def test_network_policies(live) -> None:
    """NetworkPolicies admit only the gateway pods to PostgreSQL, and egress only to pods."""
    broken = findings(live, "workload.missing", "netpol.postgres", "netpol.egress")
    assert not broken, "; ".join(broken)
