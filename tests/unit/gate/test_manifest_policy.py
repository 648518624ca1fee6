"""Each policy rule fires on a broken copy of the real kind overlay, and only that rule.

The good objects are the rendered `manifests/overlays/kind` (kubectl kustomize, < 1 s); every
case breaks one field of one object and names the rule ids it must produce.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from harness.manifests import policy as manifest_policy
from harness.manifests.policy import check, policy_types, selector_matches
from harness.manifests.render import Resource, render
from harness.paths import MANIFESTS_DIR

Objs = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def kind_resources() -> list[Resource]:
    return render(MANIFESTS_DIR / "overlays" / "kind")


@pytest.fixture
def objs(kind_resources: list[Resource]) -> Objs:
    """A fresh deep copy of the rendered objects, keyed `Kind/name`."""
    return {res.ref: copy.deepcopy(dict(res.body)) for res in kind_resources}


def rules_of(objs: Objs, **kwargs: Any) -> set[str]:
    return {finding.rule for finding in check(resources(objs), **kwargs)}


def resources(objs: Objs) -> list[Resource]:
    return [Resource(body, f"fixture:{ref}") for ref, body in objs.items()]


def gateway(objs: Objs) -> dict[str, Any]:
    return objs["Deployment/pg-gateway"]["spec"]["template"]["spec"]["containers"][0]


def postgres(objs: Objs) -> dict[str, Any]:
    return objs["StatefulSet/postgres"]["spec"]["template"]["spec"]["containers"][0]


def gateway_pod(objs: Objs) -> dict[str, Any]:
    return objs["Deployment/pg-gateway"]["spec"]["template"]["spec"]


def rolling(objs: Objs) -> dict[str, Any]:
    return objs["Deployment/pg-gateway"]["spec"]["strategy"]["rollingUpdate"]


def pg_policy(objs: Objs) -> dict[str, Any]:
    return objs["NetworkPolicy/postgres-allow-gateway"]["spec"]


def pg_rule(objs: Objs) -> dict[str, Any]:
    return pg_policy(objs)["ingress"][0]


def gateway_egress(objs: Objs) -> list[dict[str, Any]]:
    return objs["NetworkPolicy/pg-gateway-allow-egress"]["spec"]["egress"]


def add(objs: Objs, body: dict[str, Any]) -> None:
    objs[f"{body['kind']}/{body['metadata']['name']}"] = body


ALLOW_ALL_TO_POSTGRES = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "oops", "labels": {"app.kubernetes.io/part-of": "pg-gateway"}},
    "spec": {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}},
        "ingress": [{}],
    },
}
ALLOW_ALL_EGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "open", "labels": {"app.kubernetes.io/part-of": "pg-gateway"}},
    "spec": {"podSelector": {}, "egress": [{}]},  # policyTypes default to Ingress + Egress
}
SECRET_WITH_DATA = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "pg-gateway-secrets",
        "labels": {"app.kubernetes.io/part-of": "pg-gateway"},
    },
    "data": {"postgres-password": "c2VjcmV0"},
}

AWS = "service.beta.kubernetes.io/aws-load-balancer-"


def load_balancer(objs: Objs, **annotations: str) -> dict[str, Any]:
    """The gateway's Service as a LoadBalancer with these aws-load-balancer-* annotations."""
    service = objs["Service/pg-gateway"]
    service["spec"]["type"] = "LoadBalancer"
    service["spec"]["ports"][0].pop("nodePort")
    service["metadata"]["annotations"] = {
        AWS + k.replace("_", "-"): v for k, v in annotations.items()
    }
    return service


TLS = {"ssl_cert": "arn:aws:acm:eu-west-1:1:certificate/x", "ssl_ports": "https"}

Mutation = Callable[[Objs], Any]
CASES: list[tuple[str, Mutation, set[str]]] = [
    ("no startup", lambda o: gateway(o).pop("startupProbe"), {"probe.startup"}),
    (
        "runAsNonRoot false",
        lambda o: gateway_pod(o)["securityContext"].update(runAsNonRoot=False),
        {"security.run-as-non-root"},
    ),
    (
        "runAsUser 0",
        lambda o: postgres(o)["securityContext"].update(runAsUser=0),
        {"security.run-as-non-root"},
    ),
    (
        "privilege escalation",
        lambda o: postgres(o)["securityContext"].update(allowPrivilegeEscalation=True),
        {"security.privilege-escalation"},
    ),
    (
        "capabilities kept",
        lambda o: gateway(o)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        {"security.capabilities"},
    ),
    (
        "capability added",
        lambda o: postgres(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        {"security.capabilities"},
    ),
    (
        "seccomp unconfined",
        lambda o: gateway(o)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        {"security.seccomp"},
    ),
    (
        "no pod seccomp",
        lambda o: gateway_pod(o)["securityContext"].pop("seccompProfile"),
        {"security.seccomp"},
    ),
    ("no PDB", lambda o: o.pop("PodDisruptionBudget/pg-gateway"), {"pdb.gateway"}),
    (
        "PDB selects other pods",
        lambda o: o["PodDisruptionBudget/pg-gateway"]["spec"].update(
            selector={"matchLabels": {"app.kubernetes.io/name": "postgres"}}
        ),
        {"pdb.gateway"},
    ),
    (
        "PDB minAvailable 0",
        lambda o: o["PodDisruptionBudget/pg-gateway"]["spec"].update(minAvailable=0),
        {"pdb.gateway"},
    ),
    ("maxUnavailable 1", lambda o: rolling(o).update(maxUnavailable=1), {"rollout.strategy"}),
    ("maxSurge 25%", lambda o: rolling(o).update(maxSurge="25%"), {"rollout.strategy"}),
    (
        "rollingUpdate defaults",
        lambda o: o["Deployment/pg-gateway"]["spec"]["strategy"].pop("rollingUpdate"),
        {"rollout.strategy"},
    ),
    (
        "Recreate",
        lambda o: o["Deployment/pg-gateway"]["spec"].update(strategy={"type": "Recreate"}),
        {"rollout.strategy"},
    ),
    (
        "no postgres policy (default deny only)",
        lambda o: o.pop("NetworkPolicy/postgres-allow-gateway"),
        {"netpol.postgres"},
    ),
    (
        "no policy at all",
        lambda o: [o.pop(ref) for ref in list(o) if ref.startswith("NetworkPolicy/")],
        {"netpol.postgres"},
    ),
    ("from anywhere", lambda o: pg_rule(o).pop("from"), {"netpol.postgres"}),
    ("all ports", lambda o: pg_rule(o).pop("ports"), {"netpol.postgres"}),
    ("wrong port", lambda o: pg_rule(o)["ports"][0].update(port=5433), {"netpol.postgres"}),
    ("UDP", lambda o: pg_rule(o)["ports"][0].update(protocol="UDP"), {"netpol.postgres"}),
    (
        "port range",
        lambda o: pg_rule(o)["ports"][0].update(endPort=6000),
        {"netpol.postgres"},
    ),
    (
        "any namespace",
        lambda o: pg_rule(o)["from"][0].update(namespaceSelector={}),
        {"netpol.postgres"},
    ),
    (
        "every pod",
        lambda o: pg_rule(o)["from"][0].update(podSelector={}),
        {"netpol.postgres"},
    ),
    (
        "other pods",
        lambda o: pg_rule(o)["from"][0].update(
            podSelector={"matchLabels": {"app.kubernetes.io/part-of": "pg-gateway"}}
        ),
        {"netpol.postgres"},
    ),
    (
        "ipBlock",
        lambda o: pg_rule(o)["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        {"netpol.postgres"},
    ),
    (
        "a second policy opens postgres",
        lambda o: add(o, copy.deepcopy(ALLOW_ALL_TO_POSTGRES)),
        {"netpol.postgres"},
    ),
    ("egress anywhere", lambda o: gateway_egress(o)[1].pop("to"), {"netpol.egress"}),
    ("egress on any port", lambda o: gateway_egress(o)[1].pop("ports"), {"netpol.egress"}),
    (
        "egress to an ipBlock",
        lambda o: gateway_egress(o)[0]["to"].append({"ipBlock": {"cidr": "169.254.0.0/16"}}),
        {"netpol.egress"},
    ),
    (
        "egress to a whole namespace",
        lambda o: gateway_egress(o)[0]["to"][0].pop("podSelector"),
        {"netpol.egress"},
    ),
    (
        "a second policy opens egress",
        lambda o: add(o, copy.deepcopy(ALLOW_ALL_EGRESS)),
        {"netpol.egress"},
    ),
    ("Secret with data", lambda o: add(o, copy.deepcopy(SECRET_WITH_DATA)), {"secret.committed"}),
    (
        "a Service leads to the operations port",
        lambda o: o["Service/pg-gateway"]["spec"]["ports"].append(
            {"name": "ops", "port": 5001, "targetPort": "ops", "protocol": "TCP"}
        ),
        {"service.ops-port"},
    ),
    (
        "metrics from anywhere",
        lambda o: o["NetworkPolicy/pg-gateway-allow-metrics"]["spec"]["ingress"][0].pop("from"),
        {"netpol.ops"},
    ),
    (
        "the data port's rule opened to every port",
        lambda o: o["NetworkPolicy/pg-gateway-allow-http"]["spec"]["ingress"][0].pop("ports"),
        {"netpol.ops"},
    ),
    (
        "a load balancer of no stated scheme",
        lambda o: load_balancer(o, **TLS),
        {"service.exposure"},
    ),
    (
        "an internal load balancer in clear text",
        lambda o: load_balancer(o, scheme="internal"),
        {"service.exposure"},
    ),
    (
        "an internet-facing load balancer open to every source",
        lambda o: load_balancer(o, scheme="internet-facing", **TLS),
        {"service.exposure"},
    ),
    (
        "no part-of label",
        lambda o: o["Service/postgres"]["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
        {"labels.part-of"},
    ),
    (
        "hard-coded namespace",
        lambda o: o["Service/postgres"]["metadata"].update(namespace="prod"),
        {"namespace.hardcoded"},
    ),
    ("no postgres", lambda o: o.pop("StatefulSet/postgres"), {"workload.missing"}),
    (
        "no gateway",
        lambda o: o.pop("Deployment/pg-gateway"),
        {"workload.missing", "netpol.postgres"},
    ),
]


def test_real_kind_overlay_is_clean(objs: Objs) -> None:
    assert check(resources(objs)) == []


def test_real_aws_overlay_is_clean() -> None:
    assert check(render(MANIFESTS_DIR / "overlays" / "aws")) == []


def test_an_internet_facing_load_balancer_with_sources_and_tls_is_fine(objs: Objs) -> None:
    service = load_balancer(objs, scheme="internet-facing", **TLS)
    service["spec"]["loadBalancerSourceRanges"] = ["203.0.113.0/24"]
    assert rules_of(objs) == set()


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_fires_on_broken_object(objs: Objs, mutate: Mutation, expected: set[str]) -> None:
    mutate(objs)
    assert rules_of(objs) == expected


def test_every_rule_has_a_broken_fixture() -> None:
    """The rule ids listed in the module docstring are all proven to fire above."""
    documented = {
        line.split()[0]
        for line in (manifest_policy.__doc__ or "").splitlines()
        if line.startswith("    ") and "." in line.split()[0]
    }
    assert len(documented) >= 12
    exercised = set().union(*(expected for _, _, expected in [*CASES, *HA_CASES]))
    assert documented <= exercised, documented - exercised


def test_finding_names_file_object_and_rule(objs: Objs) -> None:
    gateway(objs).pop("startupProbe")
    [finding] = check(resources(objs))
    assert str(finding) == (
        "fixture:Deployment/pg-gateway: Deployment/pg-gateway: probe.startup: "
        "container gateway has no startupProbe"
    )


def test_named_postgres_port_is_resolved(objs: Objs) -> None:
    pg_rule(objs)["ports"][0]["port"] = "postgres"  # the container port's name
    assert rules_of(objs) == set()
    pg_rule(objs)["ports"][0]["port"] = "nonexistent"
    assert rules_of(objs) == {"netpol.postgres"}


def test_container_level_settings_override_pod_level(objs: Objs) -> None:
    gateway_pod(objs)["securityContext"].pop("seccompProfile")
    gateway(objs)["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    gateway_pod(objs)["securityContext"]["runAsNonRoot"] = False
    gateway(objs)["securityContext"]["runAsNonRoot"] = True
    assert rules_of(objs) == set()


def test_egress_rules_of_other_pods_are_not_the_apps(objs: Objs) -> None:
    elsewhere = copy.deepcopy(ALLOW_ALL_EGRESS)
    elsewhere["spec"]["podSelector"] = {"matchLabels": {"app": "not-ours"}}
    add(objs, elsewhere)
    assert rules_of(objs) == set()


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"egress": [{}]}, ["Ingress", "Egress"]),
        ({"policyTypes": ["Egress"]}, ["Egress"]),
        ({"policyTypes": ["Ingress"], "egress": [{}]}, ["Ingress"]),
    ],
)
def test_policy_types_default_as_the_api_does(spec: dict[str, Any], types: list[str]) -> None:
    assert policy_types(spec) == types


def test_secret_without_data_is_fine(objs: Objs) -> None:
    empty = copy.deepcopy(SECRET_WITH_DATA)
    del empty["data"]
    add(objs, empty)
    assert rules_of(objs) == set()


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, False),
        ({}, True),
        ({"matchLabels": {"a": "1"}}, True),
        ({"matchLabels": {"a": "2"}}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, False),
        ({"matchExpressions": [{"key": "b", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}, True),
    ],
)
def test_selector_matches(selector: dict[str, Any] | None, matches: bool) -> None:
    assert selector_matches(selector, {"a": "1"}) is matches


@pytest.fixture(scope="module")
def kind_ha_resources() -> list[Resource]:
    return render(MANIFESTS_DIR / "overlays" / "kind-ha")


@pytest.fixture
def ha_objs(kind_ha_resources: list[Resource]) -> Objs:
    """The replicated overlay (three Patroni members), as `objs`."""
    return {res.ref: copy.deepcopy(dict(res.body)) for res in kind_ha_resources}


def members_rule(objs: Objs) -> dict[str, Any]:
    return objs["NetworkPolicy/postgres-allow-members"]["spec"]["ingress"][0]


def apiserver_rule(objs: Objs) -> dict[str, Any]:
    return objs["NetworkPolicy/postgres-allow-apiserver"]["spec"]["egress"][0]


def test_real_kind_ha_overlay_is_clean(ha_objs: Objs) -> None:
    assert check(resources(ha_objs)) == []


def members(objs: Objs) -> dict[str, Any]:
    return objs["StatefulSet/postgres"]["spec"]


def patroni_config(objs: Objs) -> dict[str, str]:
    (ref,) = [ref for ref in objs if ref.startswith("ConfigMap/postgres-patroni")]
    return objs[ref]["data"]


def replace_in_patroni_config(objs: Objs, old: str, new: str) -> None:
    data = patroni_config(objs)
    assert data["patroni.yml"].count(old) == 1, old
    data["patroni.yml"] = data["patroni.yml"].replace(old, new)


HA_CASES: list[tuple[str, Mutation, set[str]]] = [
    ("a single member", lambda o: members(o).update(replicas=1), {"postgres.members"}),
    (
        "members allowed on one node",
        lambda o: members(o)["template"]["spec"].pop("affinity"),
        {"postgres.spread"},
    ),
    (
        "members kept apart by a soft preference only",
        lambda o: members(o)["template"]["spec"]["affinity"].update(
            podAntiAffinity={
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "postgres"}
                            },
                        },
                    }
                ]
            }
        ),
        {"postgres.spread"},
    ),
    (
        "no budget for the members",
        lambda o: o.pop("PodDisruptionBudget/postgres"),
        {"pdb.postgres"},
    ),
    (
        "a budget that lets two members go",
        lambda o: o["PodDisruptionBudget/postgres"]["spec"].update(maxUnavailable=2),
        {"pdb.postgres"},
    ),
    (
        "asynchronous replication",
        lambda o: replace_in_patroni_config(o, "synchronous_mode: true", "synchronous_mode: false"),
        {"postgres.synchronous"},
    ),
    (
        "synchronous but not strict",
        lambda o: replace_in_patroni_config(
            o, "synchronous_mode_strict: true", "synchronous_mode_strict: false"
        ),
        {"postgres.synchronous"},
    ),
    (
        "the gateway admitted on Patroni's REST API",
        lambda o: pg_rule(o)["ports"].append({"protocol": "TCP", "port": 8008}),
        {"netpol.postgres"},
    ),
    (
        "the members admitted on another port",
        lambda o: members_rule(o)["ports"].append({"protocol": "TCP", "port": 22}),
        {"netpol.postgres"},
    ),
    (
        "the members' rule admits the gateway too",
        lambda o: members_rule(o)["from"].append(copy.deepcopy(pg_rule(o)["from"][0])),
        {"netpol.postgres"},
    ),
    (
        "the API server's rule open to the internet",
        lambda o: apiserver_rule(o)["to"][0]["ipBlock"].update(cidr="0.0.0.0/0"),
        {"netpol.egress"},
    ),
    (
        "the API server's rule to a metadata address",
        lambda o: apiserver_rule(o)["to"][0]["ipBlock"].update(cidr="169.254.169.254/32"),
        {"netpol.egress"},
    ),
    (
        "the API server's rule on another port",
        lambda o: apiserver_rule(o)["ports"].append({"protocol": "TCP", "port": 5432}),
        {"netpol.egress"},
    ),
    (
        "the API server's rule on every port",
        lambda o: apiserver_rule(o).pop("ports"),
        {"netpol.egress"},
    ),
    (
        "the API server's rule for the gateway too",
        lambda o: o["NetworkPolicy/postgres-allow-apiserver"]["spec"].update(
            podSelector={"matchLabels": {"app.kubernetes.io/part-of": "pg-gateway"}}
        ),
        {"netpol.egress"},
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in HA_CASES], ids=[c[0] for c in HA_CASES]
)
def test_replicated_rule_fires_on_broken_object(
    ha_objs: Objs, mutate: Mutation, expected: set[str]
) -> None:
    mutate(ha_objs)
    assert rules_of(ha_objs) == expected
