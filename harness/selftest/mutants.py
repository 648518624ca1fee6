"""The catalogue of broken deployments, as data, and the small edits that make them.

Each mutant is a defect someone could plausibly ship: an edit of the rendered `kind` overlay
(the objects the e2e deploy applies) and/or a text patch of a copy of the source (for a
defect in the gateway itself), plus the e2e checks that should fail on it. An edit finds its
object by the names in `harness.names` and fails loudly when the rendering no longer has
what it edits, so the catalogue cannot silently go stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import names, paths
from harness.steps import HarnessError

Document = dict[str, Any]
Edit = Callable[[list[Document]], None]

CHECKS = "tests/e2e/gateway"
ROLLOUTS = f"{CHECKS}/test_rollouts.py::test_three_rollouts_keep_the_service_available"
# Every gateway pod evicted at once (any cluster), and the real drain of two workers one
# after the other (skipped only on a cluster made with fewer than two workers).
DRAIN = (
    f"{CHECKS}/test_disruption.py::test_node_drain_keeps_the_service_available",
    f"{CHECKS}/test_node_drain.py::test_draining_both_gateway_nodes_keeps_the_service_available",
)
DURABILITY = f"{CHECKS}/test_durability.py::test_rows_survive_postgres_pod_deletion"
HARD_KILL = f"{CHECKS}/test_hard_kill.py::test_acknowledged_commits_survive_a_hard_kill"
DURABLE_SETTINGS = (
    f"{CHECKS}/test_hard_kill.py::test_postgres_runs_with_the_settings_a_durable_commit_needs"
)
READINESS = (
    f"{CHECKS}/test_durability.py::test_readiness_takes_the_gateway_out_while_postgres_is_down"
)
NETWORK_POLICY = (
    f"{CHECKS}/test_pod_security.py::test_network_policy_admits_only_gateway_pods_to_postgres"
)
GATEWAY_EGRESS = f"{CHECKS}/test_pod_security.py::test_gateway_egress_reaches_dns_and_postgres_only"
POSTGRES_EGRESS = f"{CHECKS}/test_pod_security.py::test_postgres_egress_reaches_nothing"
NON_ROOT = f"{CHECKS}/test_pod_security.py::test_gateway_runs_as_non_root"
READ_ONLY_ROOT = f"{CHECKS}/test_pod_security.py::test_root_filesystem_is_read_only"
ROUND_TRIP = f"{CHECKS}/test_round_trip.py::test_seed_round_trip_with_http_client"
NO_SUPERUSER = f"{CHECKS}/test_round_trip.py::test_gateway_does_not_log_in_as_a_superuser"
UPGRADE = f"{CHECKS}/test_upgrade.py::test_upgrade_from_the_previous_release_and_back_loses_nothing"
PRIVILEGES = (
    f"{CHECKS}/test_privileges.py::test_logins_have_exactly_the_privileges_roles_sql_grants"
)
FAILOVER = f"{CHECKS}/test_replicated_postgres.py"
MEMBERS_APART = f"{FAILOVER}::test_each_member_runs_on_a_node_of_its_own"
PRIMARY_DRAINED = f"{FAILOVER}::test_draining_the_primarys_node_moves_the_role_and_loses_nothing"
PRIMARY_CUT_OFF = f"{FAILOVER}::test_a_primary_cut_off_is_replaced_and_rejoins_as_a_replica"
MEMBERS_EGRESS = f"{FAILOVER}::test_a_member_reaches_the_others_and_the_api_server_only"


@dataclass(frozen=True)
class SourcePatch:
    """Replace `old` by `new` in one file of the source copy; `old` must occur exactly once."""

    path: str
    old: str
    new: str

    def apply(self, source: Path) -> None:
        target = source / self.path
        text = target.read_text()
        if text.count(self.old) != 1:
            raise HarnessError(
                f"{self.path} no longer holds {self.old!r} exactly once: update the mutant"
            )
        target.write_text(text.replace(self.old, self.new))


@dataclass(frozen=True)
class Mutant:
    name: str
    defect: str  # what is wrong, as a reviewer would put it
    checks: tuple[str, ...]  # the e2e checks (pytest node ids) that should fail
    edit: Edit | None = None  # of the rendered documents, in place
    patch: SourcePatch | None = None  # of the source the gateway images are built from
    # The overlay the edit breaks: the main deployment's, or the replicated cluster's that
    # the failover checks deploy beside it (--replicated-manifests).
    overlay: Path = paths.KIND_OVERLAY


# --- finding what to edit ------------------------------------------------------------------


def _named(actual: str, name: str) -> bool:
    """`name`, or kustomize's `name-<hash>` of a generated ConfigMap."""
    return actual == name or re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", actual) is not None


def find(documents: list[Document], kind: str, name: str) -> Document:
    found = [d for d in documents if d["kind"] == kind and _named(d["metadata"]["name"], name)]
    if len(found) != 1:
        raise HarnessError(f"the rendering has {len(found)} {kind}/{name}: update the mutant")
    return found[0]


def pod_spec(documents: list[Document], kind: str, name: str) -> Document:
    return find(documents, kind, name)["spec"]["template"]["spec"]


def container(documents: list[Document], kind: str, name: str, container_name: str) -> Document:
    for spec in pod_spec(documents, kind, name)["containers"]:
        if spec["name"] == container_name:
            return spec
    raise HarnessError(f"{kind}/{name} has no container {container_name}: update the mutant")


def gateway(documents: list[Document]) -> Document:
    return container(documents, "Deployment", names.GATEWAY, names.GATEWAY_CONTAINER)


def postgres(documents: list[Document]) -> Document:
    return container(documents, "StatefulSet", names.POSTGRES, names.POSTGRES_CONTAINER)


def gateway_config(documents: list[Document]) -> dict[str, str]:
    """The data of the ConfigMap the gateway takes its settings from (envFrom)."""
    (name,) = [ref["configMapRef"]["name"] for ref in gateway(documents)["envFrom"]]
    return find(documents, "ConfigMap", name)["data"]


def drop_kind(kind: str) -> Edit:
    def edit(documents: list[Document]) -> None:
        kept = [d for d in documents if d["kind"] != kind]
        if len(kept) == len(documents):
            raise HarnessError(f"the rendering has no {kind}: update the mutant")
        documents[:] = kept

    return edit


# --- the edits -----------------------------------------------------------------------------


def recreate(documents: list[Document]) -> None:
    find(documents, "Deployment", names.GATEWAY)["spec"]["strategy"] = {"type": "Recreate"}


def no_readiness_probe(documents: list[Document]) -> None:
    del gateway(documents)["readinessProbe"]


def readiness_on_healthz(documents: list[Document]) -> None:
    gateway(documents)["readinessProbe"]["httpGet"]["path"] = "/healthz"


def no_drain(documents: list[Document]) -> None:
    del gateway(documents)["lifecycle"]  # the preStop sleep
    gateway_config(documents)["GRACEFUL_TIMEOUT_S"] = "1"


def postgres_on_empty_dir(documents: list[Document]) -> None:
    statefulset = find(documents, "StatefulSet", names.POSTGRES)
    (claim,) = statefulset["spec"].pop("volumeClaimTemplates")
    volumes = pod_spec(documents, "StatefulSet", names.POSTGRES)["volumes"]
    volumes.append({"name": claim["metadata"]["name"], "emptyDir": {}})


def postgres_acknowledges_early(documents: list[Document]) -> None:
    """Settings someone adds for speed: commits answered before WAL reaches the disk."""
    for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
        postgres(documents)["args"] += ["-c", setting]


def no_egress_policy(documents: list[Document]) -> None:
    """Only the ingress policies, as written before egress was thought of."""
    kept = [
        d
        for d in documents
        if d["kind"] != "NetworkPolicy" or "Egress" not in d["spec"].get("policyTypes", [])
    ]
    if len(kept) == len(documents):
        raise HarnessError("the rendering has no egress NetworkPolicy: update the mutant")
    documents[:] = kept


def writable_root_filesystem(documents: list[Document]) -> None:
    gateway(documents)["securityContext"]["readOnlyRootFilesystem"] = False


def gateway_as_root(documents: list[Document]) -> None:
    context = pod_spec(documents, "Deployment", names.GATEWAY)["securityContext"]
    context.update(runAsNonRoot=False, runAsUser=0, runAsGroup=0)


def superuser_login(documents: list[Document]) -> None:
    """The gateway logs in with the user and password PostgreSQL's own container has."""
    superuser = {e["name"]: e for e in postgres(documents)["env"]}
    env = gateway(documents)["env"]
    for index, entry in enumerate(env):
        if entry["name"] in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
            env[index] = superuser[entry["name"]]


def service_selects_no_pods(documents: list[Document]) -> None:
    service = find(documents, "Service", names.GATEWAY)
    service["spec"]["selector"] = {names.NAME_LABEL: f"{names.GATEWAY}-v2"}


def single_replica(documents: list[Document]) -> None:
    find(documents, "Deployment", names.GATEWAY)["spec"]["replicas"] = 1


def reader_may_write(documents: list[Document]) -> None:
    """roles.sql also grants the reader writes on every table the gateway creates."""
    data = find(documents, "ConfigMap", "postgres-roles")["data"]
    data[names.ROLES_SQL_KEY] += (
        "ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA app\n"
        "    GRANT INSERT, UPDATE, DELETE ON TABLES TO reader;\n"
    )


def postgres_pods_in_parallel(documents: list[Document]) -> None:
    """podManagementPolicy Parallel: harmless on a fresh install, but a field of the
    StatefulSet's spec the API server will not change in place."""
    find(documents, "StatefulSet", names.POSTGRES)["spec"]["podManagementPolicy"] = "Parallel"


def gateway_memory_too_small(documents: list[Document]) -> None:
    """16 MiB: gunicorn's master alone needs more, so every pod is OOM-killed at start."""
    resources = gateway(documents)["resources"]
    resources["requests"]["memory"] = resources["limits"]["memory"] = "16Mi"


def patroni_config(documents: list[Document]) -> Document:
    """The data of the replicated cluster's Patroni configuration ConfigMap."""
    return find(documents, "ConfigMap", "postgres-patroni")["data"]


def replace_in_patroni_config(documents: list[Document], old: str, new: str) -> None:
    data = patroni_config(documents)
    if data["patroni.yml"].count(old) != 1:
        raise HarnessError(f"patroni.yml no longer holds {old!r} once: update the mutant")
    data["patroni.yml"] = data["patroni.yml"].replace(old, new)


def asynchronous_replication(documents: list[Document]) -> None:
    replace_in_patroni_config(documents, "synchronous_mode: true", "synchronous_mode: false")


def single_member(documents: list[Document]) -> None:
    """One member, and so not strict (strict with no standby to confirm commits nothing:
    whoever ships one member turns it off)."""
    find(documents, "StatefulSet", names.POSTGRES)["spec"]["replicas"] = 1
    replace_in_patroni_config(
        documents, "synchronous_mode_strict: true", "synchronous_mode_strict: false"
    )


def members_may_share_a_node(documents: list[Document]) -> None:
    del pod_spec(documents, "StatefulSet", names.POSTGRES)["affinity"]


def no_member_budget(documents: list[Document]) -> None:
    documents.remove(find(documents, "PodDisruptionBudget", names.POSTGRES))


def members_egress_anywhere(documents: list[Document]) -> None:
    """The API server's exception as a quick fix for Patroni not reaching it would write it:
    any address, any port."""
    find(documents, "NetworkPolicy", "postgres-allow-apiserver")["spec"]["egress"] = [{}]


MUTANTS = (
    Mutant(
        "rollout-all-at-once",
        "the Deployment's strategy is Recreate: every replica goes before a new one starts",
        (ROLLOUTS,),
        edit=recreate,
    ),
    Mutant(
        "no-readiness-probe",
        "the gateway has no readinessProbe: a pod is in the Service whatever its state",
        (READINESS,),
        edit=no_readiness_probe,
    ),
    Mutant(
        "readiness-ignores-database",
        "the readinessProbe asks /healthz, which touches nothing, instead of /readyz",
        (READINESS,),
        edit=readiness_on_healthz,
    ),
    Mutant(
        "no-drain",
        "no drain before SIGTERM (preStop sleep removed) and GRACEFUL_TIMEOUT_S=1",
        (ROLLOUTS,),
        edit=no_drain,
    ),
    Mutant(
        "postgres-on-empty-dir",
        "PostgreSQL's data on an emptyDir instead of the PersistentVolumeClaim",
        (DURABILITY,),
        edit=postgres_on_empty_dir,
    ),
    Mutant(
        "postgres-acknowledges-early",
        "PostgreSQL runs with fsync, synchronous_commit and full_page_writes off",
        (DURABLE_SETTINGS,),
        edit=postgres_acknowledges_early,
    ),
    Mutant(
        "gateway-commits-asynchronously",
        "the gateway's connections pin synchronous_commit = off: a commit is answered 200 "
        "before its WAL is flushed",
        (HARD_KILL,),
        patch=SourcePatch(
            "app/sessions.py", '"synchronous_commit": "on",', '"synchronous_commit": "off",'
        ),
    ),
    Mutant(
        "no-network-policy",
        "no NetworkPolicy: any pod reaches PostgreSQL",
        (NETWORK_POLICY,),
        edit=drop_kind("NetworkPolicy"),
    ),
    Mutant(
        "no-egress-policy",
        "ingress NetworkPolicies only: the app's pods reach any address the node can",
        (GATEWAY_EGRESS, POSTGRES_EGRESS),
        edit=no_egress_policy,
    ),
    Mutant(
        "writable-root-filesystem",
        "the gateway's root filesystem is writable (readOnlyRootFilesystem: false)",
        (READ_ONLY_ROOT,),
        edit=writable_root_filesystem,
    ),
    Mutant(
        "gateway-as-root",
        "the gateway runs as UID 0 (runAsNonRoot: false, runAsUser: 0)",
        (NON_ROOT,),
        edit=gateway_as_root,
    ),
    Mutant(
        "500-while-postgres-gone",
        "the gateway answers 500 instead of 503 + Retry-After when PostgreSQL is unreachable",
        (DURABILITY,),
        patch=SourcePatch(
            "app/errors.py",
            'return ApiError(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})',
            "return ApiError(500, message)",
        ),
    ),
    Mutant(
        "superuser-login",
        "the gateway logs in as PostgreSQL's superuser (its POSTGRES_USER and password)",
        (NO_SUPERUSER,),
        edit=superuser_login,
    ),
    Mutant(
        "reader-may-write",
        "the reader login is granted INSERT, UPDATE and DELETE on the app's tables",
        (PRIVILEGES,),
        edit=reader_may_write,
    ),
    Mutant(
        "service-selects-no-pods",
        "the gateway's Service selects a label no pod has",
        (ROUND_TRIP,),
        edit=service_selects_no_pods,
    ),
    Mutant(
        "single-replica",
        "one gateway replica: the PodDisruptionBudget then refuses every eviction",
        DRAIN,
        edit=single_replica,
    ),
    Mutant(
        "gateway-memory-too-small",
        "the gateway's memory limit is far too small: its pods are OOM-killed at start",
        (ROUND_TRIP, NO_SUPERUSER),
        edit=gateway_memory_too_small,
    ),
    Mutant(
        "statefulset-immutable-field",
        "the StatefulSet changes a field that cannot change in place (podManagementPolicy): "
        "a fresh install works, applying it over the previous release is refused",
        (UPGRADE,),
        edit=postgres_pods_in_parallel,
    ),
    Mutant(
        "no-disruption-budget",
        "no PodDisruptionBudget: a drain evicts every gateway pod at once",
        DRAIN,
        edit=drop_kind("PodDisruptionBudget"),
    ),
    Mutant(
        "asynchronous-replication",
        "the replicated cluster replicates asynchronously: a primary cut off goes on "
        "acknowledging commits no other member has, and they are rewound when it rejoins",
        (PRIMARY_CUT_OFF,),
        edit=asynchronous_replication,
        overlay=paths.KIND_HA_OVERLAY,
    ),
    Mutant(
        "single-member",
        "PostgreSQL as one Patroni member: nothing to fail over to",
        (PRIMARY_DRAINED, PRIMARY_CUT_OFF),
        edit=single_member,
        overlay=paths.KIND_HA_OVERLAY,
    ),
    Mutant(
        "no-member-budget",
        "no PodDisruptionBudget for the members: drains may take two at once, and strict "
        "synchronous replication then stops every write",
        (PRIMARY_DRAINED,),
        edit=no_member_budget,
        overlay=paths.KIND_HA_OVERLAY,
    ),
    Mutant(
        "members-may-share-a-node",
        "no anti-affinity: two members may land on one node and be lost with it (the "
        "scheduler spreads three anyway; a fourth it puts beside one)",
        (MEMBERS_APART,),
        edit=members_may_share_a_node,
        overlay=paths.KIND_HA_OVERLAY,
    ),
    Mutant(
        "members-egress-anywhere",
        "the members' API-server exception opened to any address and port: a member may "
        "reach the cluster DNS, the nodes' kubelets and every pod",
        (MEMBERS_EGRESS,),
        edit=members_egress_anywhere,
        overlay=paths.KIND_HA_OVERLAY,
    ),
)


def select(wanted: list[str] | None) -> tuple[Mutant, ...]:
    """The mutants named in `wanted` (all when None), in catalogue order."""
    if wanted is None:
        return MUTANTS
    known = {mutant.name for mutant in MUTANTS}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise HarnessError(f"no mutant named {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(mutant for mutant in MUTANTS if mutant.name in wanted)
