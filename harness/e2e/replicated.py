"""What the replicated-PostgreSQL checks need besides a deployment: the members' roles as
Patroni labels them (`role=primary|replica` on each pod, what the Services select), read
once or watched through a disruption so the timeline shows who was primary when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client

from harness import kube, names
from harness.steps import HarnessError, probe

ROLE_LABEL = "role"  # Patroni's kubernetes.role_label (its default)
PRIMARY = "primary"
PATRONI_CONFIG = "/etc/patroni/patroni.yml"  # where the StatefulSet mounts it
WATCH_INTERVAL_S = 0.5
# Patroni's synchronous state, the ConfigMap `<scope>-sync` (PATRONI_SCOPE: the StatefulSet's
# name in components/postgres-ha).
SYNC_STATE = f"{names.POSTGRES}-sync"


def member_pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    """The replicated PostgreSQL's member pods, terminating ones included."""
    selector = f"{names.NAME_LABEL}={names.POSTGRES}"
    return core.list_namespaced_pod(namespace, label_selector=selector).items


def member_roles(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """Member pod (not terminating) -> its role label ("" while Patroni has set none)."""
    return {
        pod.metadata.name: (pod.metadata.labels or {}).get(ROLE_LABEL, "")
        for pod in member_pods(core, namespace)
        if pod.metadata.deletion_timestamp is None
    }


def streams_from(core: client.CoreV1Api, namespace: str, member: str, primary: str) -> bool:
    """`member` replicates from `primary`, as Patroni last wrote both into their pods'
    `status` annotation: its PostgreSQL running as a replica, its WAL receiver streaming, on
    the primary's timeline. The role label alone says it too early: a demoted primary is
    labelled a replica while it runs read-only on its old timeline, then has no role while
    Patroni rewinds and restarts it."""
    reported = {
        pod.metadata.name: json.loads((pod.metadata.annotations or {}).get("status") or "{}")
        for pod in member_pods(core, namespace)
    }
    mine, theirs = reported.get(member, {}), reported.get(primary, {})
    return (
        mine.get("role") == "replica"
        and mine.get("state") == "running"
        and mine.get("replication_state") == "streaming"
        and mine.get("timeline") is not None
        and mine.get("timeline") == theirs.get("timeline")
    )


def primaries(core: client.CoreV1Api, namespace: str) -> list[str]:
    return sorted(pod for pod, role in member_roles(core, namespace).items() if role == PRIMARY)


def sync_standby(core: client.CoreV1Api, namespace: str, primary: str | None = None) -> str:
    """The member Patroni made the synchronous standby (of `primary`, when given), "" while
    there is none: in strict mode the primary then commits nothing and hands its role over
    to no one (a switchover is refused: "can not find sync_standby", a drained primary is
    succeeded by no one), as right after the members start or a new primary is promoted
    (its key names the new leader and no standby until one is confirmed)."""
    try:
        state = core.read_namespaced_config_map(SYNC_STATE, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return ""
        raise
    annotations = state.metadata.annotations or {}
    standby = annotations.get("sync_standby") or ""
    if primary is not None and (annotations.get("leader") != primary or standby == primary):
        return ""
    return standby


@dataclass
class RoleWatch:
    """Polls the members' roles from start() to stop(); each change is `mark`ed (the
    timeline's events)."""

    core: client.CoreV1Api
    namespace: str
    mark: Callable[[str], float]
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        seen: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                roles = member_roles(self.core, self.namespace)
            except client.ApiException:
                roles = seen  # the API server itself may be what a check disturbs
            for pod in sorted(set(roles) | set(seen)):
                role = roles.get(pod, "gone")
                if seen.get(pod) != role:
                    self.mark(f"{pod} {role or 'no role'}")
            seen = {pod: role for pod, role in roles.items()}
            time.sleep(WATCH_INTERVAL_S)


def switchover(core: client.CoreV1Api, namespace: str, leader: str) -> str:
    """`patronictl switchover` away from `leader`, run in its container (it reaches the API
    server and the members' REST API); no candidate, since in synchronous mode Patroni hands
    over only to the synchronous standby. What patronictl printed."""
    return kube.exec_output(
        core,
        namespace,
        leader,
        names.POSTGRES_CONTAINER,
        *("patronictl", "-c", PATRONI_CONFIG, "switchover", "--force", "--leader", leader),
    )


@dataclass
class Partition:
    """One member cut off from the given peers' addresses (the other members, the API
    server's node) by DROP rules in its node's FORWARD chain, ahead of the network agent's
    (kindnetd's policy chains only RETURN, so these still decide): every packet between the
    member and a peer is dropped, established streams included, while the kubelet's probes
    (from the node itself) and the gateways still reach it. `heal()` removes exactly these."""

    node: str
    address: str
    peers: tuple[str, ...]
    cut_rules: list[tuple[str, ...]] = field(default_factory=list)

    def rules(self) -> list[tuple[str, ...]]:
        return [
            rule
            for peer in self.peers
            for rule in (
                ("FORWARD", "-s", self.address, "-d", peer, "-j", "DROP"),
                ("FORWARD", "-s", peer, "-d", self.address, "-j", "DROP"),
            )
        ]

    def cut(self) -> None:
        for rule in self.rules():
            self._iptables("-I", *rule)
            self.cut_rules.append(rule)

    def heal(self) -> None:
        while self.cut_rules:
            self._iptables("-D", *self.cut_rules.pop())

    def _iptables(self, action: str, chain: str, *spec: str) -> None:
        argv = ["docker", "exec", self.node, "iptables", action, chain, *spec]
        done = probe(argv)
        if done.returncode != 0:
            raise HarnessError(f"{' '.join(argv)}: {done.stderr.strip()}")
