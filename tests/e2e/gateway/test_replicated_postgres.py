"""Check 10: PostgreSQL as a three-member Patroni cluster (overlays/kind-ha) keeps its members
apart, loses no acknowledged write when its primary is killed, drained or cut off, and its
replicas serve the reader what the documentation promises.

The replicated deployment runs in a namespace of its own beside the main one, its gateway on
the second NodePort (reached on the control plane's address, as the upgrade check's is), one
member on each of the three nodes, synchronous replication in strict mode. The module runs
after test_node_drain.py (pytest's order is the files'): its drain moves the main
deployment's gateway pods too, and that check starts from one replica per worker.

(a) One member on each node (the members' anti-affinity): a node lost takes one member; a
    fourth member, with no node of its own left, is refused by the scheduler (so the three
    are apart by a rule Kubernetes enforces, not by its spreading alone).
(b) The primary killed hard: under the rollouts' load (keep-alive, new-connection and slow
    clients) and writers inserting unique ids, every Patroni and PostgreSQL process of the
    primary's pod is sent SIGKILL from its node (a crash or an OOM kill: nothing is flushed or
    handed over; the container restarts, and whichever member wins the leader lock, the
    restarted one with its data or a synchronous replica once the lock expires, is primary;
    a force-deleted pod would be no hard kill: the kubelet still sends SIGTERM and waits 2 s,
    in which Patroni hands over cleanly). Writes must be served again within
    WRITE_GAP_LIMIT_S (the longest time between two acknowledged inserts, measured); no
    request may answer 500; and every insert answered 200 must be in the table afterwards,
    compared as a set (as Jepsen checks it). The timeline, with each member's role as
    Patroni labels it, is artifacts/e2e/failover-primary-killed.{csv,png}.
(c) The primary's node drained as kops drains it (`kubectl drain`, the budget allowing one
    member down): Patroni, stopped by the eviction, hands the primary role to the
    synchronous replica before it exits, so writes stop for under SWITCHOVER_GAP_LIMIT_S;
    nothing acknowledged is lost; the drain completes within DRAIN_TIMEOUT_S; while the
    drained member is away (its volume is the node's), the budget refuses to evict a second
    one; once the node is uncordoned the member rejoins as a replica. The check drains a
    worker: a primary on the control plane (where the main deployment's PostgreSQL lives) is
    first switched over (`patronictl switchover`) to the synchronous standby, on a worker. Timeline:
    artifacts/e2e/failover-primary-drained.{csv,png}.
(d) The primary cut off from the other members and the API server (DROP rules in its
    node's FORWARD chain; the gateways still reach it): with strict synchronous replication
    it can acknowledge nothing (no standby confirms), it demotes itself once its leader lock
    expires (ttl), a synchronous replica is promoted, and once the cut heals the old primary
    rejoins as a replica (pg_rewind); no acknowledged insert is missing, so none was
    acknowledged by a primary whose writes were then rewound. A primary on the control plane
    is first switched over. Timeline: artifacts/e2e/failover-primary-cut-off.{csv,png}.
(e) A rolling change of the members (a pod template change; their StatefulSet is OnDelete)
    made by scripts/roll-postgres.sh: the replicas are replaced first, then the primary role
    is switched over to an updated replica and the former primary replaced last; every
    member ends on the new revision, writes stop for under SWITCHOVER_GAP_LIMIT_S, nothing
    acknowledged is lost. Timeline: artifacts/e2e/failover-rolling-change.{csv,png}.
(f) Reads through the replicas' Service (the reader token, POSTGRES_HOST_READER): a row the
    admin's insert acknowledged is served by the primary at once, and by the replicas within
    REPLICA_VISIBLE_LIMIT_S (docs/operations.md: the synchronous standby has the commit
    flushed before the acknowledgement, not yet applied, and the other replica is
    asynchronous); the reader's own write is refused.
(g) A member's egress (components/postgres-ha/networkpolicy.yaml, the overlay's
    apiserver-egress.yaml): a replica reaches the other members' PostgreSQL and Patroni
    ports and the API server (its Service's address), and nothing else: not the cluster
    DNS, not the kubelet on its node's address (in the range the API server's exception
    names, on another port), not a gateway pod's data port (which admits anyone).

Defects these exist to catch (the self-test's mutants): asynchronous replication (a primary
cut off goes on acknowledging commits that are rewound), a single member (nothing to fail
over to), no budget for the members (a drain may take two), members sharing a node; and a
Service that keeps sending writes to a former primary, a gateway that answers 500 or hangs
while there is no primary.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from kubernetes import client

from harness import kube, names, paths
from harness.cluster import GateCluster
from harness.e2e import deploy, upgrade
from harness.e2e.availability import Measurement, measured_load, write_timeline
from harness.e2e.drain import NodeDrain, evict, uncordon, wait_until, worker_nodes
from harness.e2e.kill import kill_pod_processes
from harness.e2e.plugin import Deployment, deployment_beside, keep_deployment, run_harness
from harness.e2e.replicated import (
    PRIMARY,
    Partition,
    RoleWatch,
    member_pods,
    member_roles,
    primaries,
    streams_from,
    switchover,
    sync_standby,
)
from harness.e2e.writers import Writers
from harness.steps import step

SETTLE_S = 3.0
MEMBERS = 3  # components/postgres-ha: one on each of the default cluster's three nodes
MEMBER_PROCESSES = ("patroni", names.POSTGRES)
# The target for a lost primary: Patroni's ttl (20 s) and loop_wait (5 s) bound it
# (components/postgres-ha/patroni.yml says why).
WRITE_GAP_LIMIT_S = 30.0
SWITCHOVER_GAP_LIMIT_S = 10.0  # the target for a drain's or a roll's switchover
NEW_PRIMARY_TIMEOUT_S = 90.0
WRITE_ON_AFTER_S = 3.0
REPLICA_VISIBLE_LIMIT_S = 10.0
READS = 20
DRAIN_TIMEOUT_S = 90.0
MEMBERS_BACK_TIMEOUT_S = 180.0
# The cluster runs on two members until the old primary streams again. After the heal
# Patroni notices the new leader within a loop (loop_wait, 5 s), rewinds and restarts the
# member (2-3 s) and reports it streaming at its next loop: 5.5-14.1 s measured. Before
# patroni.yml's wal_sender_timeout, the demoting primary's shutdown alone lasted up to 44 s
# (its role label came back 3-36 s after the heal).
REJOIN_TIMEOUT_S = 30.0
ROLL_TIMEOUT_S = 600.0
ROLL_ANNOTATION = "pg-gateway.e2e/rolled"  # a pod template change, as any change makes
REVISION = "controller-revision-hash"  # the StatefulSet's label of a pod's revision
SERVICE_GONE_TIMEOUT_S = 60.0
FOURTH_MEMBER_TIMEOUT_S = 60.0
SYNC_STANDBY_TIMEOUT_S = 60.0  # Patroni picks one within a loop_wait (5 s) of a replica streaming
KUBELET_PORT = 10250  # answers anyone who may connect (check 4's decoys show it)
NAMESPACE_PREFIX = "pgw-e2e-ha-"


@pytest.fixture(scope="module")
def replicated(
    request: pytest.FixtureRequest,
    kind_cluster: GateCluster,
    api: client.ApiClient,
    gateway_images: dict[str, str],
) -> Iterator[Deployment]:
    """The kind-ha overlay (or --replicated-manifests) deployed into a namespace of its own,
    serving on the second NodePort; removed afterwards, and before it any earlier run's."""
    core = client.CoreV1Api(api)
    namespace = f"{NAMESPACE_PREFIX}{secrets.token_hex(3)}"
    deployed = deployment_beside(request, kind_cluster, api, gateway_images, namespace)
    images = {
        names.GATEWAY_CONTAINER: gateway_images["first"],
        names.POSTGRES_CONTAINER: gateway_images["postgres"],
    }
    target = request.config.getoption("--replicated-manifests")
    documents = upgrade.with_node_port(deploy.rendering(target, images), upgrade.UPGRADE_NODE_PORT)
    for earlier in core.list_namespace(label_selector=f"{names.E2E_LABEL}=true").items:
        if earlier.metadata.name.startswith(NAMESPACE_PREFIX):  # a kept or failed run's
            release(core, earlier.metadata.name)
    try:
        run_harness(
            deploy.deploy, api, kind_cluster, namespace, target, images, deployed.credentials,
            documents,
        )  # fmt: skip
        standby = synchronous_standby(core, namespace, "after the deploy")
        print(
            f"\nreplicated PostgreSQL in {namespace}: {member_roles(core, namespace)}, "
            f"synchronous standby {standby}"
        )
        yield deployed
    finally:
        if not keep_deployment(request.config):
            release(core, namespace)


def release(core: client.CoreV1Api, namespace: str) -> None:
    """Delete the namespace, its gateway's Service first and waited for: that frees the
    NodePort (the upgrade check's, and the next run's); the rest goes in the background."""
    try:
        core.delete_namespaced_service(names.GATEWAY, namespace)
    except client.ApiException as error:
        if error.status != 404:
            raise
    deadline = time.monotonic() + SERVICE_GONE_TIMEOUT_S
    while any(
        s.metadata.name == names.GATEWAY for s in core.list_namespaced_service(namespace).items
    ):
        assert time.monotonic() < deadline, f"Service {names.GATEWAY} is still in {namespace}"
        time.sleep(0.5)
    core.delete_namespace(namespace)


@contextmanager
def under_write_load(replicated: Deployment, table: str) -> Iterator[tuple[Measurement, Writers]]:
    """The rollouts' load through the second NodePort, writers inserting unique ids into a
    new `table`, and the members' roles watched into the timeline, settled before the block."""
    created = replicated.query_once_served(
        f"create table if not exists {table} (id bigint primary key)"
    )
    assert "error" not in created, created
    probe = replicated.load_probe()
    with (
        measured_load(probe, replicated.apps, replicated.namespace, names.GATEWAY) as measured,
        Writers(replicated, table) as writers,
    ):
        roles = RoleWatch(replicated.core, replicated.namespace, measured.mark)
        roles.start()
        try:
            time.sleep(SETTLE_S)
            yield measured, writers
        finally:
            roles.stop()


@dataclass(frozen=True)
class Written:
    """What the writers and the load saw of one disturbance, judged once the load ended."""

    gap_s: float  # the longest time between two acknowledged inserts in the window
    answers: Counter[str]  # the writers', by status
    acknowledged: int
    present: int
    lost: list[int]  # acknowledged, and not in the table
    failed: Counter[int | None]  # the load's failed requests, by status

    @classmethod
    def judge(
        cls, measured: Measurement, writers: Writers, start: float, end: float, stem: str
    ) -> tuple[Written, str]:
        """The outcome between time.monotonic() `start` and `end`, and the timeline
        artifacts/e2e/<stem>.{csv,png} written."""
        csv_path, png_path = write_timeline(paths.E2E_ARTIFACTS, stem, measured)
        present, lost = writers.lost()
        written = cls(
            writers.longest_write_gap_s(start, end),
            Counter(str(status) for status in writers.answers.values()),
            len(writers.acknowledged()),
            present,
            lost,
            Counter(s.status for s in measured.probe.samples if s.failed),
        )
        return written, f"{csv_path.name}, {png_path.name}"

    def summary(self) -> str:
        return (
            f"longest write gap {self.gap_s:.1f} s; writers' answers {dict(self.answers)}; "
            f"{self.acknowledged} acknowledged, {self.present} present, {len(self.lost)} "
            f"acknowledged and lost; the load's failures by status {dict(self.failed)}"
        )

    def assert_kept(self, what: str, gap_limit_s: float | None) -> None:
        """Nothing acknowledged lost, nothing answered 500, writes back within the limit."""
        assert not self.lost, f"acknowledged inserts missing after {what}: {self.lost[:20]}"
        assert "500" not in self.answers and 500 not in self.failed, f"a 500 in {what}"
        assert gap_limit_s is None or self.gap_s <= gap_limit_s, (
            f"writes stopped for {self.gap_s:.1f} s in {what} (limit {gap_limit_s:.0f} s)"
        )


def synchronous_standby(
    core: client.CoreV1Api, namespace: str, when: str, primary: str | None = None
) -> str:
    """The member Patroni made the synchronous standby (of `primary`, when given), waited
    for: until there is one, in strict mode the primary commits nothing and hands its role
    to no one."""
    standby = wait_until(lambda: sync_standby(core, namespace, primary), SYNC_STANDBY_TIMEOUT_S)
    assert standby, f"no synchronous standby {SYNC_STANDBY_TIMEOUT_S:.0f} s {when}"
    return standby


def wait_for_new_primary(
    replicated: Deployment, old: str, since: float, other_than_old: bool = False
) -> str:
    """The one member labelled primary (besides `old` when `other_than_old`: a member cut
    off keeps the label it can no longer change) once the gateway writes through it."""
    while True:
        found = [
            pod
            for pod in primaries(replicated.core, replicated.namespace)
            if not (other_than_old and pod == old)
        ]
        if len(found) == 1 and serves(replicated):
            return found[0]
        assert time.monotonic() - since < NEW_PRIMARY_TIMEOUT_S, (
            f"no primary serving {NEW_PRIMARY_TIMEOUT_S:.0f} s after {old} was disturbed: "
            f"{member_roles(replicated.core, replicated.namespace)}"
        )
        time.sleep(0.5)


def serves(replicated: Deployment) -> bool:
    """The gateway answers a query through its NodePort (none while no pod is ready)."""
    try:
        return replicated.query("select 1").status_code == 200
    except requests.RequestException:
        return False


def the_primary(replicated: Deployment) -> str:
    """The one member labelled primary, waited for (an earlier check's member may still be
    coming back)."""

    def one() -> list[str]:
        found = primaries(replicated.core, replicated.namespace)
        return found if len(found) == 1 else []

    found = wait_until(one, NEW_PRIMARY_TIMEOUT_S)
    assert found, f"not one primary: {member_roles(replicated.core, replicated.namespace)}"
    return found[0]


def node_of(replicated: Deployment, pod: str) -> str:
    return replicated.core.read_namespaced_pod(pod, replicated.namespace).spec.node_name


def primary_on_a_worker(replicated: Deployment) -> str:
    """The primary, switched over first when it is on the control plane (which the checks
    must not drain or cut off: the main deployment's PostgreSQL is there), once it has a
    synchronous standby; the other two members, one of them that standby, which takes
    over, are on the workers."""
    core, namespace = replicated.core, replicated.namespace
    primary = the_primary(replicated)
    workers = set(worker_nodes(core))
    if node_of(replicated, primary) not in workers:
        # Strict mode hands the role over to the synchronous standby only, which an earlier
        # check's member may not be yet.
        synchronous_standby(core, namespace, f"to switch {primary} over to")
        print(switchover(core, namespace, primary))

        def on_a_worker() -> str | None:
            found = primaries(core, namespace)
            moved = len(found) == 1 and found[0] != primary and serves(replicated)
            return found[0] if moved and node_of(replicated, found[0]) in workers else None

        candidate = wait_until(on_a_worker, NEW_PRIMARY_TIMEOUT_S)
        assert candidate, (
            f"the switchover from {primary} did not happen: {member_roles(core, namespace)}"
        )
        primary = candidate
    # A new primary has no synchronous standby until a replica is confirmed as one: a drain
    # right after the switchover (one replica streaming, the old primary restarting) left
    # no member allowed to take over, and no primary for 90 s.
    synchronous_standby(core, namespace, f"of {primary} to take over", primary)
    return primary


def test_each_member_runs_on_a_node_of_its_own(replicated: Deployment) -> None:
    members = member_pods(replicated.core, replicated.namespace)
    placed = {pod.metadata.name: pod.spec.node_name for pod in members}
    print(f"\nmembers' nodes: {placed}")
    assert len(placed) == MEMBERS, f"{len(placed)} members, not {MEMBERS}: {placed}"
    assert len(set(placed.values())) == MEMBERS, f"members share a node: {placed}"
    # Three members on three nodes may be the scheduler's spreading alone: a fourth has no
    # node of its own, and only a rule Kubernetes enforces keeps it off the others.
    extra = fourth_member_placement(replicated)
    print(f"a fourth member: {extra}")
    assert extra.startswith("unschedulable") and "anti-affinity" in extra, (
        f"a fourth member was not refused a node: {extra} (members: {placed})"
    )


def fourth_member_placement(replicated: Deployment) -> str:
    """Scale the members to four and say where the scheduler put the fourth ("node N", or
    "unschedulable: why"); then back to three, its claim deleted."""
    apps, core, namespace = replicated.apps, replicated.core, replicated.namespace
    extra = f"{names.POSTGRES}-{MEMBERS}"

    def decided(pod: client.V1Pod) -> bool:
        conditions = pod.status.conditions or []
        return bool(pod.spec.node_name) or any(
            c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions
        )

    apps.patch_namespaced_stateful_set_scale(
        names.POSTGRES, namespace, {"spec": {"replicas": MEMBERS + 1}}
    )
    try:
        pod = kube.wait_for(
            core.list_namespaced_pod,
            namespace,
            extra,
            decided,
            f"the scheduler's decision on {extra}",
            FOURTH_MEMBER_TIMEOUT_S,
        )
        if pod.spec.node_name:
            return f"node {pod.spec.node_name}"
        (refused,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
        return f"unschedulable: {refused.message}"
    finally:
        apps.patch_namespaced_stateful_set_scale(
            names.POSTGRES, namespace, {"spec": {"replicas": MEMBERS}}
        )
        gone = wait_until(
            lambda: kube.read_pod(core, namespace, extra) is None, FOURTH_MEMBER_TIMEOUT_S
        )
        assert gone, f"{extra} still there {FOURTH_MEMBER_TIMEOUT_S:.0f} s after scaling back"
        try:
            core.delete_namespaced_persistent_volume_claim(f"data-{extra}", namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise


def test_a_primary_killed_hard_loses_no_acknowledged_write(replicated: Deployment) -> None:
    core, namespace = replicated.core, replicated.namespace
    old = the_primary(replicated)
    with under_write_load(replicated, "killed") as (measured, writers):
        killed_at = time.monotonic()
        killed = kill_pod_processes(core, namespace, old, MEMBER_PROCESSES)
        measured.mark(f"{old}: {killed} processes killed")
        assert killed > 1, f"Patroni and PostgreSQL of {old} were not found on its node"
        new = wait_for_new_primary(replicated, old, killed_at)
        served_s = time.monotonic() - killed_at
        measured.mark(f"{new} primary and serving")
        time.sleep(WRITE_ON_AFTER_S)
        ended_at = time.monotonic()
    written, timeline = Written.judge(
        measured, writers, killed_at, ended_at, "failover-primary-killed"
    )
    print(
        f"primary killed: {killed} processes of {old} killed, {new} primary and serving after "
        f"{served_s:.1f} s; {written.summary()}; load: {measured.summary()}; {timeline}"
    )
    written.assert_kept("the failover", WRITE_GAP_LIMIT_S)
    assert written.answers["200"] > 0 and len(written.answers) > 1, (
        "the kill did not fall under the write load"
    )


def test_draining_the_primarys_node_moves_the_role_and_loses_nothing(
    replicated: Deployment, kind_cluster: GateCluster
) -> None:
    core, namespace = replicated.core, replicated.namespace
    old = primary_on_a_worker(replicated)
    node = node_of(replicated, old)
    kubectl, kubeconfig = kind_cluster.kubectl_path, replicated.kubeconfig
    try:
        with under_write_load(replicated, "drained") as (measured, writers):
            roles = member_roles(core, namespace)
            assert primaries(core, namespace) == [old], f"{old} is not the one primary: {roles}"
            drain = NodeDrain(kubectl, kubeconfig, node, measured.probe.elapsed_s, measured.mark)
            drain.timeout_s = DRAIN_TIMEOUT_S
            started_at = time.monotonic()
            drain.start()
            drained = drain.wait()
            new = wait_for_new_primary(replicated, old, started_at)
            # While the drained member is away, the budget must hold the other two.
            (second,) = [pod for pod in member_roles(core, namespace) if pod not in (old, new)]
            second_evicted = evict(core, namespace, second)
            measured.mark(f"eviction of {second}: {'done' if second_evicted else 'refused'}")
            time.sleep(WRITE_ON_AFTER_S)
            ended_at = time.monotonic()
    finally:
        uncordon(kubectl, kubeconfig, node)
    written, timeline = Written.judge(
        measured, writers, started_at, ended_at, "failover-primary-drained"
    )
    kube.wait_statefulset_ready(replicated.apps, namespace, names.POSTGRES, MEMBERS_BACK_TIMEOUT_S)
    print(
        f"primary's node drained: kubectl drain {node} exit {drain.status} in "
        f"{drain.duration_s:.1f} s; primary {old} -> {new}; eviction of {second} while {old} "
        f"was away: {'done' if second_evicted else 'refused'}; {written.summary()}; load: "
        f"{measured.summary()}; after the uncordon {member_roles(core, namespace)}; {timeline}"
    )
    assert drained, f"kubectl drain {node} did not complete: {drain.error or drain.status}"
    assert not second_evicted, (
        f"{second} was evicted while {old} was away: no budget holds the members to one down"
    )
    assert new != old, f"{old} is still primary after its node was drained"
    written.assert_kept("the drain", SWITCHOVER_GAP_LIMIT_S)


def test_a_primary_cut_off_is_replaced_and_rejoins_as_a_replica(replicated: Deployment) -> None:
    core, namespace = replicated.core, replicated.namespace
    old = primary_on_a_worker(replicated)
    pods = {pod.metadata.name: pod for pod in core.list_namespaced_pod(namespace).items}
    others = [name for name in member_roles(core, namespace) if name != old]
    api_server = upgrade.control_plane_address(core)
    partition = Partition(
        node_of(replicated, old),
        pods[old].status.pod_ip,
        (*(pods[name].status.pod_ip for name in others), api_server),
    )
    with under_write_load(replicated, "cut_off") as (measured, writers):
        roles = member_roles(core, namespace)
        assert primaries(core, namespace) == [old], f"{old} is not the one primary: {roles}"
        try:
            partition.cut()
            cut_at = time.monotonic()
            measured.mark(f"{old} cut off from {', '.join(partition.peers)}")
            new = wait_for_new_primary(replicated, old, cut_at, other_than_old=True)
            new_at = time.monotonic()
            measured.mark(f"{new} primary and serving")
            time.sleep(WRITE_ON_AFTER_S)
        finally:
            partition.heal()
        healed_at = time.monotonic()
        measured.mark("cut healed")
        rejoined = wait_until(
            lambda: streams_from(core, namespace, old, new) and primaries(core, namespace) == [new],
            REJOIN_TIMEOUT_S,
        )
        rejoined_s = time.monotonic() - healed_at
        time.sleep(WRITE_ON_AFTER_S)
    written, timeline = Written.judge(
        measured, writers, cut_at, healed_at, "failover-primary-cut-off"
    )
    # With strict synchronous replication the cut-off primary acknowledges nothing once the
    # rules are in (an insert in flight may still be answered): writes stop at the cut.
    stopped, _ = writers.longest_write_gap(cut_at, healed_at)
    print(
        f"primary cut off: {old} from the other members and the API server; {new} primary "
        f"{new_at - cut_at:.1f} s after the cut; writes stopped "
        f"{stopped - cut_at:.1f} s after the cut; {old} streaming from {new} {rejoined_s:.1f} s "
        f"after the heal: {bool(rejoined)}; {written.summary()}; load: {measured.summary()}; "
        f"{timeline}"
    )
    written.assert_kept("the partition", None)
    assert new != old, f"{old} stayed primary while cut off"
    assert rejoined, (
        f"{old} not streaming from {new} {REJOIN_TIMEOUT_S:.0f} s after the cut healed: "
        f"{member_roles(core, namespace)}"
    )


def test_a_rolling_change_replaces_the_replicas_first_and_the_primary_last(
    replicated: Deployment, kind_cluster: GateCluster
) -> None:
    core, apps, namespace = replicated.core, replicated.apps, replicated.namespace
    old = the_primary(replicated)
    change = {"spec": {"template": {"metadata": {"annotations": {ROLL_ANNOTATION: "1"}}}}}
    apps.patch_namespaced_stateful_set(names.POSTGRES, namespace, change)
    env = {"KUBECTL": str(kind_cluster.kubectl_path), "KUBECONFIG": str(replicated.kubeconfig)}
    lines: list[str] = []
    with under_write_load(replicated, "rolled") as (measured, writers):

        def said(line: str) -> None:
            lines.append(line)
            measured.mark(line.removeprefix("roll-postgres: "))

        started_at = time.monotonic()
        with step(f"scripts/roll-postgres.sh {namespace}") as current:
            status = current.follow(
                [paths.REPO_ROOT / "scripts" / "roll-postgres.sh", namespace],
                said,
                env=env,
                timeout=ROLL_TIMEOUT_S,
            )
        new = wait_for_new_primary(replicated, old, started_at)
        time.sleep(WRITE_ON_AFTER_S)
        ended_at = time.monotonic()
    written, timeline = Written.judge(
        measured, writers, started_at, ended_at, "failover-rolling-change"
    )
    replaced = [line.rsplit(" ", 1)[-1] for line in lines if "replacing" in line]
    revision = apps.read_namespaced_stateful_set(names.POSTGRES, namespace).status.update_revision
    members = member_pods(core, namespace)
    stale = [p.metadata.name for p in members if p.metadata.labels.get(REVISION) != revision]
    print(
        f"rolling change: roll-postgres exit {status} in {ended_at - started_at:.1f} s; "
        f"replaced in order {replaced}; primary {old} -> {new}; {written.summary()}; load: "
        f"{measured.summary()}; {timeline}"
    )
    assert status == 0, f"scripts/roll-postgres.sh exited {status}: {lines[-3:]}"
    assert not stale, f"members still on the old revision: {stale}"
    assert len(replaced) == MEMBERS and replaced[-1] == old, (
        f"the primary {old} was not replaced last: {replaced}"
    )
    assert any("switching the primary over" in line for line in lines), lines
    assert new != old, f"{old} is primary again after the roll"
    written.assert_kept("the rolling change", SWITCHOVER_GAP_LIMIT_S)


def test_the_reader_reads_acknowledged_writes_from_the_replicas(replicated: Deployment) -> None:
    reader = replicated.credentials.reader_token
    assert replicated.query("create table replicated_reads (id bigint primary key)").ok
    assert replicated.query("grant select on replicated_reads to reader").ok
    delays = []
    started = time.monotonic()
    for row in range(READS):
        insert = replicated.query("insert into replicated_reads values (%s)", params=[row])
        assert insert.status_code == 200, insert.text
        acknowledged_at = time.monotonic()
        on_primary = replicated.query(
            "select count(*) as n from replicated_reads where id = %s", params=[row]
        )
        assert on_primary.json()["result"][0]["n"] == 1, "the primary lacks its own commit"
        while True:
            seen = replicated.query(
                "select pg_is_in_recovery() as replica, count(*) as n from replicated_reads "
                "where id = %s",
                token=reader,
                params=[row],
            )
            assert seen.status_code == 200, seen.text
            result = seen.json()["result"][0]
            assert result["replica"], "the reader token was served by the primary"
            if result["n"] == 1:
                break
            assert time.monotonic() - acknowledged_at < REPLICA_VISIBLE_LIMIT_S, (
                f"row {row} not visible to the reader {REPLICA_VISIBLE_LIMIT_S:.0f} s after "
                "its insert was acknowledged"
            )
            time.sleep(0.05)
        delays.append(time.monotonic() - acknowledged_at)
    write = replicated.query("insert into replicated_reads values (-1)", token=reader)
    print(
        f"\nreader through the replicas ({time.monotonic() - started:.1f} s): {READS} "
        "acknowledged rows visible after "
        f"max {max(delays) * 1000:.0f} ms, median {sorted(delays)[READS // 2] * 1000:.0f} ms; "
        f"its insert: {write.status_code}"
    )
    assert write.status_code in (403,), f"the reader's insert answered {write.status_code}"


def test_a_member_reaches_the_others_and_the_api_server_only(replicated: Deployment) -> None:
    core, namespace = replicated.core, replicated.namespace
    pods = {pod.metadata.name: pod for pod in member_pods(core, namespace)}
    member = next(pod for pod, role in member_roles(core, namespace).items() if role != PRIMARY)
    api_server = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    dns = core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
    node = core.read_node(pods[member].spec.node_name)
    node_ip = kube.node_address(node)
    gateway = replicated.gateway_pods()[0].status.pod_ip
    allowed = [
        f"{pod.status.pod_ip}:{port}"
        for name, pod in pods.items()
        if name != member
        for port in (names.POSTGRES_PORT, names.PATRONI_PORT)
    ] + [f"{api_server}:443"]
    denied = [f"{dns}:53", f"{node_ip}:{KUBELET_PORT}", f"{gateway}:{names.GATEWAY_PORT}"]
    reached = kube.connections_from(
        core, namespace, member, names.POSTGRES_CONTAINER, allowed + denied
    )
    print(f"\negress of member {member}: {reached}")
    refused = [target for target in allowed if not reached[target]]
    escaped = [target for target in denied if reached[target]]
    assert refused == [], f"member {member} could not reach {refused}, which it needs"
    assert escaped == [], f"member {member} reached {escaped} outside its egress policy"
