"""Check 7b: evicting every gateway pod at once, as kubectl drain does, keeps the gateway
available. test_node_drain.py drains the workers one after the other for real; this is the
drain of every node that holds a replica at the same time (the one node of a one-node
cluster, or two nodes drained in parallel), which must be held back just as well.

`kubectl drain` evicts every pod of a node through the Eviction API and retries those a
PodDisruptionBudget refuses for now. Here each gateway pod is evicted that way, at once,
under the rollouts' load: the budget must let
them go one at a time (and not refuse for ever: a drain would then never finish), with zero
failed requests and `readyReplicas` never below 1 (the budget counts ready pods, so a
replacement may serve before it counts as available after minReadySeconds). The timeline
is saved as artifacts/e2e/drain-timeline.{csv,png}.
"""

from __future__ import annotations

import time

from kubernetes import client

from harness import names, paths
from harness.e2e import deploy
from harness.e2e.availability import measured_load, write_timeline
from harness.e2e.drain import evict

SETTLE_S = 3.0
RETRY_S = 1.0  # kubectl drain retries every 5 s; sooner here keeps the check short
# Refused this long while every pod the budget counts is healthy: it allows no eviction at
# all, and a drain would wait for ever.
STUCK_S = 15.0
DRAIN_TIMEOUT_S = 180.0


def budget_status(deployment) -> client.V1PodDisruptionBudgetStatus | None:
    """The gateway's budget as the disruption controller last saw it (None without one)."""
    policy = client.PolicyV1Api(deployment.api)
    budgets = policy.list_namespaced_pod_disruption_budget(deployment.namespace).items
    return next((b.status for b in budgets if b.metadata.name == names.GATEWAY), None)


def drain(deployment, pods: list[str], mark) -> None:
    """Evict `pods` until all are gone, retrying refusals; fail when the budget is stuck."""
    remaining = list(pods)
    started = time.monotonic()
    stuck_since = None
    while remaining:
        for pod in list(remaining):
            if evict(deployment.core, deployment.namespace, pod):
                remaining.remove(pod)
                mark(f"evicted {pod}")
        if not remaining:
            return
        status = budget_status(deployment)
        healthy = status is not None and status.current_healthy >= status.expected_pods
        stuck_since = (stuck_since or time.monotonic()) if healthy else None
        assert stuck_since is None or time.monotonic() - stuck_since < STUCK_S, (
            f"the PodDisruptionBudget refuses to evict {remaining} although every pod it "
            f"counts is healthy: a node drain would never finish ({status})"
        )
        assert time.monotonic() - started < DRAIN_TIMEOUT_S, f"{remaining} not evicted: {status}"
        time.sleep(RETRY_S)


def test_node_drain_keeps_the_service_available(deployment) -> None:
    pods = [pod.metadata.name for pod in deployment.gateway_pods()]
    probe = deployment.load_probe()
    with measured_load(probe, deployment.apps, deployment.namespace, names.GATEWAY) as measured:
        time.sleep(SETTLE_S)
        measured.mark("drain")
        drain(deployment, pods, measured.mark)
        deploy.wait_rolled_out(deployment.apps, deployment.namespace)
        measured.mark("drain done")
        time.sleep(SETTLE_S)
    csv_path, png_path = write_timeline(paths.E2E_ARTIFACTS, "drain-timeline", measured)
    print(
        f"\ndrain of {len(pods)} gateway pods: {measured.summary()}; "
        f"timeline: {csv_path}, {png_path}"
    )
    assert len(pods) >= 2, f"{len(pods)} gateway pod: any disruption is an outage"
    assert measured.replicas.min_ready >= 1
    assert probe.failures == [], probe.failures[:5]
    probe.require_rate()
