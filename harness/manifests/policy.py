"""The project's policy rules over rendered Kubernetes objects (pure functions, no I/O).

`check(resources)` answers every finding for one rendered kustomize target. The rules say
what this deployment must guarantee beyond schema validity and beyond kube-score's general
checks (`harness.manifests.kubescore`: resources, readiness and liveness probes, read-only
root, privileged, UIDs, image tags and pull policy, NetworkPolicy and PDB coverage): a
startup probe, the parts of a locked-down securityContext kube-score does not check, a PDB
that keeps a gateway up and a zero-downtime rollout, PostgreSQL reachable only from the
gateway (and, replicated, its members from each other), egress only to named pods and
ports (PostgreSQL's members may reach the API server, which is no pod, by a private address
range on its port), the probes' port kept out of every Service and
admitted only from named pods, a load balancer only with TLS (and source ranges when it
faces the internet), and no Secret committed with data. Nothing
here repeats a kube-score check except where this rule is stricter (kube-score asks for a
PDB only from 2 replicas on). `harness.manifests.lint` renders the targets, validates the
schemas and calls this.

Rule ids are stable (tests and readers grep for them):

    labels.part-of           every object carries app.kubernetes.io/part-of: pg-gateway
    namespace.hardcoded      no metadata.namespace (the namespace is chosen at apply time)
    probe.startup            every Deployment container has a startupProbe
    security.run-as-non-root runAsNonRoot true (pod or container), never UID 0
    security.privilege-escalation  allowPrivilegeEscalation false
    security.capabilities    capabilities drop ALL, nothing added
    security.seccomp         seccompProfile RuntimeDefault (pod or container)
    pdb.gateway              a PodDisruptionBudget with minAvailable >= 1 selects the gateway
    rollout.strategy         the gateway rolls out with maxSurge 1 and maxUnavailable 0
    netpol.postgres          PostgreSQL pods admit only the gateway pods, on TCP 5432, and
                             each other (replication, Patroni's REST API on 8008)
    netpol.egress            egress rules over the app's pods name both pods and ports; the
                             one exception, PostgreSQL's members to the API server (Patroni's
                             store), names a private range and the API server's ports only
    netpol.ops               the gateway's operations port admits only pods a rule names
    service.ops-port         no Service leads to the gateway's operations port
    service.exposure         a LoadBalancer Service states its scheme, terminates TLS, and
                             when internet-facing lists the sources it admits
    secret.committed         no Secret with data or stringData in the manifests
    workload.missing         the gateway Deployment and the PostgreSQL StatefulSet exist
    postgres.members         a PostgreSQL StatefulSet that runs Patroni has at least 3 members
    postgres.spread          ... and a required podAntiAffinity keeps them on separate nodes
    pdb.postgres             ... and a PodDisruptionBudget lets only one of them go at a time
    postgres.synchronous     ... and its Patroni configuration replicates synchronously, strict
                             or quorum (an acknowledged commit is on two members)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from harness import names
from harness.manifests.render import Resource

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

Obj = Mapping[str, Any]
# What the exception for Patroni's store may name: the API server behind the `kubernetes`
# Service answers on a node's address (kind 6443, kops 443), never on the internet.
API_SERVER_PORTS = frozenset({443, 6443})
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


@dataclass(frozen=True)
class Finding:
    """One broken rule: printed as `source: Kind/name: rule-id: message`."""

    source: str
    ref: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.ref}: {self.rule}: {self.message}"


def check(resources: Sequence[Resource], *, target: str = "(rendered)") -> list[Finding]:
    """Every policy finding for one rendered target (`target` names it in findings that
    concern something missing rather than one object)."""
    findings: list[Finding] = []
    for res in resources:
        findings.extend(_check_metadata(res))
        findings.extend(check_secret(res))
        if res.kind in WORKLOAD_KINDS:
            findings.extend(_check_pod_template(res))
    findings.extend(_check_gateway(resources, target))
    findings.extend(_check_postgres_network(resources, target))
    findings.extend(_check_replicated(resources))
    findings.extend(_check_egress(resources))
    findings.extend(_check_ops_port(resources))
    findings.extend(_check_exposure(resources))
    return findings


# --- helpers -------------------------------------------------------------------------------


def _finding(res: Resource, rule: str, message: str) -> Finding:
    return Finding(res.source, res.ref, rule, message)


def pod_spec(res: Resource) -> Obj:
    """The pod spec of a workload (empty when absent)."""
    return res.body.get("spec", {}).get("template", {}).get("spec", {}) or {}


def pod_labels(res: Resource) -> Obj:
    return res.body.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            yield field, container


def selector_matches(selector: Obj | None, labels: Obj) -> bool:
    """Kubernetes LabelSelector semantics: `{}` selects everything, None selects nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and (not present or labels[key] not in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
            or op not in {"In", "NotIn", "Exists", "DoesNotExist"}
        ):
            return False
    return True


def _workloads(resources: Sequence[Resource], kind: str, app_name: str) -> list[Resource]:
    return [
        res
        for res in resources
        if res.kind == kind and pod_labels(res).get(names.NAME_LABEL) == app_name
    ]


# --- per-object rules ----------------------------------------------------------------------


def _check_metadata(res: Resource) -> Iterator[Finding]:
    metadata = res.body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    key, value = names.PART_OF_LABEL, names.APP
    if labels.get(key) != value:
        yield _finding(res, "labels.part-of", f"metadata.labels lacks {key}: {value}")
    if metadata.get("namespace"):
        yield _finding(
            res,
            "namespace.hardcoded",
            f"metadata.namespace is {metadata['namespace']!r}; leave it out and apply with -n",
        )


def check_secret(res: Resource) -> Iterator[Finding]:
    if res.kind == "Secret" and (res.body.get("data") or res.body.get("stringData")):
        yield _finding(
            res,
            "secret.committed",
            "a Secret with data is committed; create it per deployment (scripts/deploy.sh)",
        )


def _check_pod_template(res: Resource) -> Iterator[Finding]:
    spec = pod_spec(res)
    pod_sc = spec.get("securityContext") or {}
    for field, container in _containers(spec):
        where = f"{field[:-1]} {container.get('name', '?')}"
        # A slow first start must not be taken for a dead process (liveness).
        if field == "containers" and res.kind == "Deployment" and not container.get("startupProbe"):
            yield _finding(res, "probe.startup", f"{where} has no startupProbe")
        yield from _check_security(res, pod_sc, container.get("securityContext") or {}, where)


def _check_security(res: Resource, pod_sc: Obj, sc: Obj, where: str) -> Iterator[Finding]:
    def effective(key: str) -> Any:
        return sc[key] if key in sc else pod_sc.get(key)

    if effective("runAsNonRoot") is not True:
        yield _finding(res, "security.run-as-non-root", f"{where}: runAsNonRoot is not true")
    if effective("runAsUser") == 0:
        yield _finding(res, "security.run-as-non-root", f"{where}: runAsUser is 0 (root)")
    if sc.get("allowPrivilegeEscalation") is not False:
        yield _finding(
            res,
            "security.privilege-escalation",
            f"{where}: allowPrivilegeEscalation is not false",
        )
    capabilities = sc.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        yield _finding(res, "security.capabilities", f"{where}: capabilities do not drop ALL")
    if capabilities.get("add"):
        yield _finding(
            res,
            "security.capabilities",
            f"{where}: adds capabilities {', '.join(capabilities['add'])}",
        )
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        yield _finding(
            res, "security.seccomp", f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault"
        )


# --- cross-object rules --------------------------------------------------------------------


def _missing_workload(target: str, kind: str, name: str) -> Finding:
    return Finding(
        target,
        f"{kind}/{name}",
        "workload.missing",
        f"no {kind} with pods labelled {names.NAME_LABEL}={name}",
    )


def _check_gateway(resources: Sequence[Resource], target: str) -> Iterator[Finding]:
    if not _workloads(resources, "Deployment", names.GATEWAY):
        yield _missing_workload(target, "Deployment", names.GATEWAY)
    pdbs = [res for res in resources if res.kind == "PodDisruptionBudget"]
    for deployment in (res for res in resources if res.kind == "Deployment"):
        yield from _check_rollout(deployment)
        labels = pod_labels(deployment)
        covering = [
            pdb for pdb in pdbs if selector_matches(pdb.body["spec"].get("selector"), labels)
        ]
        if not covering:
            yield _finding(deployment, "pdb.gateway", "no PodDisruptionBudget selects its pods")
        for pdb in covering:
            spec = pdb.body["spec"]
            if "minAvailable" in spec and _is_zero(spec["minAvailable"]):
                yield _finding(pdb, "pdb.gateway", "minAvailable 0 protects nothing")


# A replicated PostgreSQL (components/postgres-ha): what its guarantees rest on.
MIN_MEMBERS = 3
SPREAD_KEYS = frozenset({"kubernetes.io/hostname", "topology.kubernetes.io/zone"})


def _runs_patroni(res: Resource) -> bool:
    return any(
        "patroni" in " ".join([*c.get("command", []), *c.get("args", [])])
        for _, c in _containers(pod_spec(res))
    )


def _check_replicated(resources: Sequence[Resource]) -> Iterator[Finding]:
    for database in _workloads(resources, "StatefulSet", names.POSTGRES):
        if not _runs_patroni(database):
            continue
        members = database.body["spec"].get("replicas", 1)
        if members < MIN_MEMBERS:
            yield _finding(
                database,
                "postgres.members",
                f"{members} member(s): losing the primary needs a synchronous standby to "
                f"promote and a third member to stay writable, {MIN_MEMBERS} at least",
            )
        if not _kept_apart(pod_spec(database), pod_labels(database)):
            yield _finding(
                database,
                "postgres.spread",
                "no required podAntiAffinity on the hostname or the zone keeps its members "
                "apart: two may share a node and be lost with it",
            )
        if not _one_at_a_time(resources, pod_labels(database), members):
            yield _finding(
                database,
                "pdb.postgres",
                "no PodDisruptionBudget lets only one member go at a time (maxUnavailable 1)",
            )
        if not _synchronous(resources, database):
            yield _finding(
                database,
                "postgres.synchronous",
                "its Patroni configuration (bootstrap.dcs) does not replicate synchronously "
                "in strict or quorum mode: a commit may be acknowledged on one member only",
            )


def _kept_apart(spec: Obj, labels: Obj) -> bool:
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    return any(
        term.get("topologyKey") in SPREAD_KEYS
        and selector_matches(term.get("labelSelector"), labels)
        for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    )


def _one_at_a_time(resources: Sequence[Resource], labels: Obj, members: int) -> bool:
    for pdb in (res for res in resources if res.kind == "PodDisruptionBudget"):
        spec = pdb.body["spec"]
        if selector_matches(spec.get("selector"), labels) and (
            spec.get("maxUnavailable") in (1, "1")
            or spec.get("minAvailable") in (members - 1, str(members - 1))
        ):
            return True
    return False


def _synchronous(resources: Sequence[Resource], database: Resource) -> bool:
    """The Patroni configuration of a ConfigMap the StatefulSet mounts says so."""
    mounted = {
        (volume.get("configMap") or {}).get("name")
        for volume in pod_spec(database).get("volumes") or []
    }
    for config_map in (res for res in resources if res.kind == "ConfigMap"):
        if config_map.name not in mounted:
            continue
        for key, text in (config_map.body.get("data") or {}).items():
            if not key.endswith((".yml", ".yaml")):
                continue
            dcs = ((yaml.safe_load(text) or {}).get("bootstrap") or {}).get("dcs") or {}
            mode = dcs.get("synchronous_mode")
            if mode == "quorum" or (mode is True and dcs.get("synchronous_mode_strict") is True):
                return True
    return False


def _is_zero(value: Any) -> bool:
    return value in (0, "0", "0%")


def _check_rollout(res: Resource) -> Iterator[Finding]:
    strategy = res.body.get("spec", {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        yield _finding(
            res, "rollout.strategy", f"strategy is {strategy['type']}, not RollingUpdate"
        )
        return
    rolling = strategy.get("rollingUpdate") or {}
    surge = rolling.get("maxSurge", "25%")
    unavailable = rolling.get("maxUnavailable", "25%")
    if surge not in (1, "1"):
        yield _finding(res, "rollout.strategy", f"maxSurge is {surge!r}, want 1")
    if not _is_zero(unavailable):
        yield _finding(res, "rollout.strategy", f"maxUnavailable is {unavailable!r}, want 0")


def _container_port_numbers(res: Resource) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for container in pod_spec(res).get("containers") or []
        for port in container.get("ports") or []
        if "name" in port
    }


def policy_types(spec: Obj) -> list[str]:
    """A NetworkPolicy's types; the API's default is Ingress, plus Egress with egress rules."""
    return list(
        spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    )


def _names_pods(selector: Obj | None) -> bool:
    """A podSelector that picks pods by label (absent or `{}` means every pod)."""
    return bool(selector and (selector.get("matchLabels") or selector.get("matchExpressions")))


def _check_postgres_network(resources: Sequence[Resource], target: str) -> Iterator[Finding]:
    postgres = _workloads(resources, "StatefulSet", names.POSTGRES)
    gateways = _workloads(resources, "Deployment", names.GATEWAY)
    if not postgres:
        yield _missing_workload(target, "StatefulSet", names.POSTGRES)
    policies = [res for res in resources if res.kind == "NetworkPolicy"]
    for database in postgres:
        db_labels = pod_labels(database)
        named_ports = _container_port_numbers(database)
        selecting = [
            pol
            for pol in policies
            if selector_matches(pol.body.get("spec", {}).get("podSelector"), db_labels)
            and "Ingress" in policy_types(pol.body["spec"])
        ]
        if not selecting:
            yield _finding(
                database, "netpol.postgres", "no NetworkPolicy restricts ingress to its pods"
            )
            continue
        admits_gateway = False
        for policy in selecting:
            for index, rule in enumerate(policy.body["spec"].get("ingress") or []):
                peers = list(_ingress_peers(rule, gateways, db_labels))
                problems = [problem for problem in peers if problem not in PEER_KINDS]
                problems += _ingress_port_problems(rule, set(peers), named_ports)
                for problem in problems:
                    yield _finding(policy, "netpol.postgres", f"ingress[{index}] {problem}")
                admits_gateway = admits_gateway or (not problems and GATEWAY_PEER in peers)
        if not admits_gateway:
            yield _finding(
                database,
                "netpol.postgres",
                f"no NetworkPolicy admits the gateway pods on TCP {names.POSTGRES_PORT}",
            )


GATEWAY_PEER, MEMBER_PEER = "gateway", "member"
PEER_KINDS = (GATEWAY_PEER, MEMBER_PEER)


def _ingress_peers(rule: Obj, gateways: Sequence[Resource], db_labels: Obj) -> Iterator[str]:
    """Each source of one ingress rule selecting PostgreSQL: GATEWAY_PEER, MEMBER_PEER (its
    own pods: the members of a replicated cluster), or why it admits more."""
    peers = rule.get("from") or []
    if not peers:
        yield "admits every source (no `from`)"
    for peer in peers:
        if "ipBlock" in peer or "namespaceSelector" in peer:
            yield "admits sources by ipBlock/namespaceSelector, not only the gateway pods"
            continue
        selector = peer.get("podSelector")
        member = selector_matches(selector, db_labels)
        gateway = any(selector_matches(selector, pod_labels(gw)) for gw in gateways)
        if not _names_pods(selector):
            yield "admits every pod of the namespace (empty podSelector)"
        elif member != gateway:
            yield MEMBER_PEER if member else GATEWAY_PEER
        else:
            yield "admits pods other than the gateway's"


def _ingress_port_problems(rule: Obj, peers: set[str], named_ports: Mapping[str, int]) -> list[str]:
    """The gateway may reach 5432 only; members each other on 5432 and Patroni's port."""
    wanted = {names.POSTGRES_PORT}
    if peers == {MEMBER_PEER}:
        wanted.add(names.PATRONI_PORT)
    ports = rule.get("ports") or []
    problems = [] if ports else ["admits every port"]
    for port in ports:
        protocol = port.get("protocol", "TCP")
        number = port.get("port")
        number = named_ports.get(number, number) if isinstance(number, str) else number
        if protocol != "TCP" or number not in wanted or port.get("endPort", number) != number:
            allowed = " and ".join(f"TCP {each}" for each in sorted(wanted))
            problems.append(f"admits {protocol} {port.get('port', 'any port')}, not only {allowed}")
    return problems


def _check_egress(resources: Sequence[Resource]) -> Iterator[Finding]:
    """Whatever egress a policy allows the app's pods names its pods and its ports: a rule
    open to every address, a whole namespace or an ipBlock could reach the node, other
    tenants or a cloud metadata endpoint. (That every pod is egress-isolated at all is
    kube-score's pod-networkpolicy.)"""
    app_pods = [pod_labels(res) for res in resources if res.kind in WORKLOAD_KINDS]
    members = [pod_labels(res) for res in _workloads(resources, "StatefulSet", names.POSTGRES)]
    for policy in (res for res in resources if res.kind == "NetworkPolicy"):
        spec = policy.body.get("spec") or {}
        selector = spec.get("podSelector")
        selected = [labels for labels in app_pods if selector_matches(selector, labels)]
        if "Egress" not in policy_types(spec) or not selected:
            continue
        members_only = all(labels in members for labels in selected)
        for index, rule in enumerate(spec.get("egress") or []):
            for problem in _egress_rule_problems(rule, members_only):
                yield _finding(policy, "netpol.egress", f"egress[{index}] {problem}")


def _egress_rule_problems(rule: Obj, members_only: bool) -> Iterator[str]:
    peers = rule.get("to") or []
    if not peers:
        yield "allows every destination (no `to`)"
    for peer in peers:
        if "ipBlock" in peer:
            if not (members_only and _reaches_only_the_api_server(peer["ipBlock"], rule)):
                yield (
                    "allows addresses by ipBlock, not pods (only PostgreSQL's members may, to "
                    "the API server: a private range, TCP 443 or 6443 only)"
                )
        elif not _names_pods(peer.get("podSelector")):
            yield "allows every pod of a namespace (no or empty podSelector)"
    if not rule.get("ports"):
        yield "allows every port"


def _reaches_only_the_api_server(block: Obj, rule: Obj) -> bool:
    """An ipBlock inside a private range, in a rule of the API server's TCP ports only."""
    try:
        network = ipaddress.ip_network(block.get("cidr", ""))
    except ValueError:
        return False
    private = any(
        network.version == each.version and network.subnet_of(each)  # type: ignore[arg-type]
        for each in PRIVATE_RANGES
    )
    ports = rule.get("ports") or []
    return (
        private
        and bool(ports)
        and all(
            port.get("protocol", "TCP") == "TCP"
            and port.get("port") in API_SERVER_PORTS
            and port.get("endPort", port.get("port")) == port.get("port")
            for port in ports
        )
    )


def _check_ops_port(resources: Sequence[Resource]) -> Iterator[Finding]:
    """The probes' and metrics' port is for the kubelet and Prometheus: no Service leads to
    it, and a policy admitting it names the pods it admits (the metrics name the logins)."""
    gateways = _workloads(resources, "Deployment", names.GATEWAY)
    ops_ports = {names.OPS_PORT_NAME, names.OPS_PORT}
    for service in (res for res in resources if res.kind == "Service"):
        for port in service.body.get("spec", {}).get("ports") or []:
            if port.get("targetPort", port.get("port")) in ops_ports:
                yield _finding(service, "service.ops-port", "leads to the operations port")
    for policy in (res for res in resources if res.kind == "NetworkPolicy"):
        spec = policy.body.get("spec") or {}
        if "Ingress" not in policy_types(spec) or not any(
            selector_matches(spec.get("podSelector"), pod_labels(gw)) for gw in gateways
        ):
            continue
        for index, rule in enumerate(spec.get("ingress") or []):
            ports = {p.get("port") for p in rule.get("ports") or []}
            admits_ops = not ports or ports & ops_ports
            peers = rule.get("from") or []
            if admits_ops and (
                not peers or not all(_names_pods(p.get("podSelector")) for p in peers)
            ):
                yield _finding(
                    policy,
                    "netpol.ops",
                    f"ingress[{index}] admits the operations port from sources it does not name",
                )


_AWS = "service.beta.kubernetes.io/aws-load-balancer-"


def _check_exposure(resources: Sequence[Resource]) -> Iterator[Finding]:
    """A token crosses the load balancer's network: TLS there, and an internet-facing one
    admits only the networks it lists (an open one is a flood and a brute force away)."""
    for service in (res for res in resources if res.kind == "Service"):
        spec = service.body.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        annotations = service.body.get("metadata", {}).get("annotations") or {}
        scheme = annotations.get(_AWS + "scheme")
        if scheme not in ("internal", "internet-facing"):
            yield _finding(service, "service.exposure", "states no scheme (internal or not)")
        if scheme == "internet-facing" and not spec.get("loadBalancerSourceRanges"):
            yield _finding(
                service, "service.exposure", "is internet-facing with no loadBalancerSourceRanges"
            )
        if not (annotations.get(_AWS + "ssl-cert") and annotations.get(_AWS + "ssl-ports")):
            yield _finding(service, "service.exposure", "terminates no TLS (ssl-cert, ssl-ports)")
