"""The objects as Kubernetes reports them (checked first): both rollouts complete, every
replica Ready, and the PodDisruptionBudget and NetworkPolicies the manifest policy requires."""

from __future__ import annotations

import pytest

from harness import kube, names
from harness.kube import pods
from harness.manifests import policy
from harness.manifests.render import Resource
from harness.steps import HarnessError

WORKLOADS = [("statefulset", names.POSTGRES), ("deployment", names.GATEWAY)]
IDS = [f"{kind}/{name}" for kind, name in WORKLOADS]
WAITS = {"statefulset": kube.wait_statefulset_ready, "deployment": kube.wait_rolled_out}


def read(apps, kind: str, name: str, namespace: str):
    reads = {
        "statefulset": apps.read_namespaced_stateful_set,
        "deployment": apps.read_namespaced_deployment,
    }
    return reads[kind](name, namespace)


@pytest.mark.parametrize(("kind", "name"), WORKLOADS, ids=IDS)
def test_rollout_complete(apps, namespace, wait, kind, name) -> None:
    """The rollout is complete."""
    try:
        WAITS[kind](apps, namespace, name, wait)
    except kube.CannotBecomeReady as exc:
        pytest.fail(f"{kind}/{name} cannot roll out: {'; '.join(exc.troubles)}", pytrace=False)
    except HarnessError:
        status = read(apps, kind, name, namespace).status
        pytest.fail(
            f"{kind}/{name} not rolled out within {wait:.0f} s: {status.updated_replicas or 0} "
            f"replicas updated, {status.ready_replicas or 0} ready, {status.replicas or 0} in all",
            pytrace=False,
        )


@pytest.mark.parametrize(("kind", "name"), WORKLOADS, ids=IDS)
def test_every_replica_ready(apps, core, namespace, kind, name) -> None:
    """Every replica Ready."""
    workload = read(apps, kind, name, namespace)
    wanted = workload.spec.replicas
    assert wanted, f"{kind}/{name} wants {wanted} replicas: nothing serves"
    selector = ",".join(f"{k}={v}" for k, v in workload.spec.selector.match_labels.items())
    members = [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
        if pod.metadata.deletion_timestamp is None
    ]
    ready = [pod for pod in members if kube.pod_ready(pod)]
    not_ready = sorted(pods.not_ready_reason(pod) for pod in members if not kube.pod_ready(pod))
    assert len(ready) == wanted and not not_ready, (
        f"{kind}/{name}: {len(ready)} of {wanted} replicas Ready; "
        f"not Ready: {', '.join(not_ready) or 'none'}"
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
