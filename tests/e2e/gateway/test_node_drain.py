"""Check 7 (with worker nodes): a real `kubectl drain` of both gateway nodes, as kops drains.

The two gateway replicas run on the two workers (the Deployment spreads them; PostgreSQL is
pinned to the control plane, which is tainted, so no gateway pod goes there). Under the
rollouts' load through the NodePort (published on the control plane, forwarded by kube-proxy
to whichever worker serves):

1. `kubectl drain --ignore-daemonsets --delete-emptydir-data` of worker A: its replica is
   evicted (the budget allows one disruption of two healthy pods) and its replacement can
   only go to worker B;
2. as soon as that replacement is scheduled, worker B is drained too. The budget
   (minAvailable 1) must refuse the eviction of B's serving replica while no other replica is
   Ready: kubectl prints "Cannot evict pod as it would violate the pod's disruption budget"
   and retries every 5 s. (The replacement on B, not Ready yet, is evicted at once: the
   budget lets an unhealthy pod go while the healthy ones suffice, `IfHealthyBudget`.)
3. once drain A has finished, A is uncordoned (in a kops rolling update the new node has
   joined), so the evicted replicas start on A; when one is Ready, B's serving replica goes,
   and B's drain finishes (kubectl's --timeout bounds it); then B is uncordoned. Both
   uncordons also run in a `finally`.

Zero failed requests; `readyReplicas` never below 1 (the Deployment's watch records every
change; the budget counts Ready pods, so `availableReplicas`, which waits out minReadySeconds,
may touch 0 for up to 3 s while a Ready replacement serves: it is reported, not asserted); at
least one refusal seen; B's serving replica evicted only after a new replica was Ready. The timeline
(requests, replica counts, every drain event) is artifacts/e2e/node-drain-timeline.{csv,png}.
On a cluster with fewer than two workers test_disruption.py emulates the drain instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness import kube, names, paths
from harness.cluster import GateCluster
from harness.cluster.shape import DRAINED_WORKERS
from harness.e2e import deploy
from harness.e2e.availability import measured_load, write_timeline
from harness.e2e.drain import Event, NodeDrain, uncordon, wait_until, worker_nodes

SETTLE_S = 3.0
DRAIN_TIMEOUT_S = 90.0  # each drain's kubectl --timeout (a sound one takes under 30 s)
SCHEDULED_TIMEOUT_S = 45.0  # for A's replica's replacement to be bound to a node
SAMPLE_SLACK_S = 1.0  # the pods are polled, so a Ready transition is seen a little late


def placement(deployment) -> dict[str, str]:
    """Gateway pod (not terminating) -> the node it is bound to ("" while pending)."""
    return {pod.metadata.name: pod.spec.node_name or "" for pod in deployment.gateway_pods()}


class PodSampler:
    """When each gateway pod was first seen Ready (on the measurement's clock), polled."""

    def __init__(self, deployment, clock) -> None:
        self.deployment, self.clock = deployment, clock
        self.ready_at: dict[str, float] = {}

    def sample(self) -> list[Any]:
        pods = self.deployment.gateway_pods()
        for pod in pods:
            if kube.pod_ready(pod):
                self.ready_at.setdefault(pod.metadata.name, self.clock())
        return pods


def test_draining_both_gateway_nodes_keeps_the_service_available(
    deployment, kind_cluster: GateCluster
) -> None:
    nodes = worker_nodes(deployment.core)
    if len(nodes) < DRAINED_WORKERS:
        pytest.skip(f"{len(nodes)} worker nodes: test_disruption.py emulates the drain instead")
    before = placement(deployment)
    print(f"\ngateway pods before the drain: {before}")
    first_node = sorted(before.values())[0]
    second_node = next(node for node in nodes if node != first_node)
    kubectl, kubeconfig = kind_cluster.kubectl_path, deployment.kubeconfig
    probe = deployment.load_probe()
    drain_b: NodeDrain | None = None
    replacement: tuple[str, str] | None = None
    try:
        with measured_load(probe, deployment.apps, deployment.namespace, names.GATEWAY) as measured:
            clock = probe.elapsed_s
            pods = PodSampler(deployment, clock)
            pods.sample()
            time.sleep(SETTLE_S)
            drain_a = NodeDrain(kubectl, kubeconfig, first_node, clock, measured.mark)
            drain_a.timeout_s = DRAIN_TIMEOUT_S
            drain_a.start()

            def scheduled() -> tuple[str, str] | None:
                bound = [
                    (pod.metadata.name, pod.spec.node_name)
                    for pod in pods.sample()
                    if pod.metadata.name not in before and pod.spec.node_name
                ]
                return bound[0] if bound else None

            replacement = wait_until(scheduled, SCHEDULED_TIMEOUT_S)
            if replacement is not None:
                measured.mark(f"{replacement[0]} scheduled on {replacement[1]}")
                drain_b = NodeDrain(kubectl, kubeconfig, second_node, clock, measured.mark)
                drain_b.timeout_s = DRAIN_TIMEOUT_S
                drain_b.start()
            # Sample readiness while drain A runs, then put A back and let B's drain finish.
            wait_until(lambda: pods.sample() and not drain_a.running, DRAIN_TIMEOUT_S + 60)
            drain_a.wait()
            uncordon(kubectl, kubeconfig, first_node)
            measured.mark(f"uncordoned {first_node}")
            if drain_b is not None:
                wait_until(lambda: pods.sample() and not drain_b.running, DRAIN_TIMEOUT_S + 60)
                drain_b.wait()
                uncordon(kubectl, kubeconfig, second_node)
                measured.mark(f"uncordoned {second_node}")
            deploy.wait_rolled_out(deployment.apps, deployment.namespace)
            measured.mark("drains done")
            time.sleep(SETTLE_S)
    finally:
        for node in (first_node, second_node):  # idempotent: never leave a node cordoned
            uncordon(kubectl, kubeconfig, node)
    csv_path, png_path = write_timeline(paths.E2E_ARTIFACTS, "node-drain-timeline", measured)

    drains = [d for d in (drain_a, drain_b) if d is not None]
    refusals = [e for d in drains for e in d.of(Event.REFUSED)]
    print(f"node drain: {measured.summary()}")
    for drain in drains:
        print(
            f"  kubectl drain {drain.node}: exit {drain.status}, {drain.duration_s:.1f} s, "
            f"evicted {[e.name for e in drain.of(Event.EVICTED)]}, "
            f"{len(drain.of(Event.REFUSED))} refusals by the PodDisruptionBudget"
            + (f"; {drain.error}" if drain.error else "")
        )
    for refusal in refusals:
        print(f"  {refusal.at_s:6.1f} s  {refusal.line}")
    print(
        f"  figures: {len(probe.samples)} requests, {len(probe.failures)} failed, "
        f"min availableReplicas {measured.replicas.min_available}, "
        f"min readyReplicas {measured.replicas.min_ready}, {len(refusals)} eviction refusals, "
        f"drain of {first_node} {drain_a.duration_s:.1f} s"
        + (f", of {second_node} {drain_b.duration_s:.1f} s" if drain_b else "")
        + f"; gateway pods after: {placement(deployment)}; timeline: {csv_path}, {png_path}"
    )

    assert len(before) >= 2, f"{len(before)} gateway pod: any drain is an outage"
    assert len(set(before.values())) == len(before), (
        f"the gateway's replicas share a node ({before}): one drain takes them all"
    )
    assert replacement is not None, (
        f"draining {first_node} evicted no gateway pod within {SCHEDULED_TIMEOUT_S:.0f} s "
        f"(refusals: {[e.line for e in drain_a.of(Event.REFUSED)][:3]})"
    )
    assert drain_b is not None
    assert drain_a.drained, f"kubectl drain {first_node} did not finish: {drain_a.error}"
    assert drain_b.drained, f"kubectl drain {second_node} did not finish: {drain_b.error}"
    assert drain_b.of(Event.REFUSED), (
        f"the PodDisruptionBudget refused no eviction from {second_node} while it held "
        "the only other replica: the drains took every replica at once"
    )
    # B's serving replica may go only once a replica made during the drain serves elsewhere.
    (serving,) = [pod for pod, node in before.items() if node == second_node]
    left_at = next((e.at_s for e in drain_b.of(Event.EVICTED) if e.name == serving), None)
    new_ready = [at for pod, at in pods.ready_at.items() if pod not in before]
    assert left_at is not None, f"{serving} was not evicted from {second_node}"
    assert new_ready and left_at >= min(new_ready) - SAMPLE_SLACK_S, (
        f"{serving} left {second_node} at {left_at:.1f} s, before any new replica was Ready "
        f"({min(new_ready, default=None)} s)"
    )
    assert measured.replicas.events, "the Deployment watch saw no status"
    assert measured.replicas.min_ready >= 1
    assert probe.failures == [], probe.failures[:5]
    probe.require_rate()
