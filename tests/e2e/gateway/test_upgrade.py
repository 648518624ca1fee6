"""Check 9: an upgrade from the previous release, and the rollback to it, under load.

A deploy to a running cluster applies onto the previous release, not onto an empty namespace.
The previous release (`--upgrade-from`, by default `harness.e2e.upgrade.PREVIOUS_RELEASE`) is
deployed into a namespace of its own, its gateway built from its own tree; rows are written
through it; then this release's manifests and image are applied over it while the rollouts'
load runs and writers insert unique ids, and then the previous release's again (the rollback
a failed smoke check leads to). After each: every row written before and every insert
answered 200 is there, and PostgreSQL's logins have the connection limits the running
release's roles.sql sets.

Defects this exists to catch: a change the API server refuses to make in place (an immutable
field of the StatefulSet, the Deployment's selector): the apply fails, naming the object, the
field and the way out; provisioning that never reaches a data directory an earlier release
made (roles.sql run at first initialisation only: the old limits refuse the new pools);
requests or acknowledged writes lost while the releases change places.

With one PostgreSQL member, a release whose StatefulSet changes restarts PostgreSQL, and
requests fail while it is down (the HA work removes that): then only 503s and refused or
reset connections are accepted, and they are counted; a release that leaves PostgreSQL alone
must lose no request at all. The timelines are artifacts/e2e/upgrade-*.{csv,png}.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from harness import build, names, paths
from harness.cluster import GateCluster
from harness.e2e import deploy, diagnostics, upgrade
from harness.e2e.availability import LoadProbe, Sample, measured_load, write_timeline
from harness.e2e.plugin import Deployment, deployment_beside, keep_deployment, run_harness
from harness.e2e.writers import Writers

SETTLE_S = 3.0
ROWS_BEFORE = 1000
# What a request may answer while PostgreSQL restarts: the gateway's 503, its 504 for a
# request whose deadline passed while it waited, or no answer from a Service whose pods
# readiness took out (status None: refused or reset).
DURING_A_RESTART = {503, 504, None}


@pytest.fixture(scope="module")
def releases(
    request: pytest.FixtureRequest,
    kind_cluster: GateCluster,
    gateway_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, list[dict]]]]:
    """Both releases, by name: the kustomization and its rendering for the check's namespace
    (the previous one from its own tree and gateway image, this one from --deploy-manifests
    and this run's image)."""
    ref = request.config.getoption("--upgrade-from")
    tree = run_harness(upgrade.export_release, ref, tmp_path_factory.mktemp("previous"))
    image = run_harness(build.gateway_image, f"e2e-previous-{secrets.token_hex(3)}", tree)
    run_harness(kind_cluster.load_docker_image, image)
    postgres = {names.POSTGRES_CONTAINER: gateway_images["postgres"]}
    previous = tree / paths.KIND_OVERLAY.relative_to(paths.REPO_ROOT)
    this = request.config.getoption("--deploy-manifests")
    port = upgrade.UPGRADE_NODE_PORT
    yield {
        f"previous release {ref[:12]}": (
            previous,
            upgrade.with_node_port(
                deploy.rendering(previous, {names.GATEWAY_CONTAINER: image, **postgres}), port
            ),
        ),
        "this release": (
            this,
            upgrade.with_node_port(
                deploy.rendering(
                    this, {names.GATEWAY_CONTAINER: gateway_images["first"], **postgres}
                ),
                port,
            ),
        ),
    }
    if not keep_deployment(request.config):
        run_harness(kind_cluster.remove_docker_image, image)


def connection_limits(deployed: Deployment) -> dict[str, int]:
    rows = deployed.superuser_sql(
        "postgres",
        "select rolname, rolconnlimit from pg_roles where rolname in ('gateway', 'reader')",
    )
    return {name: int(limit) for name, limit in (row.split("\t") for row in rows.splitlines())}


def roles_sql_limits(documents: list[dict]) -> dict[str, int]:
    """The connection limits the rendering's roles.sql sets."""
    (roles_sql,) = [
        d["data"][names.ROLES_SQL_KEY]
        for d in documents
        if d["kind"] == "ConfigMap" and names.ROLES_SQL_KEY in d.get("data", {})
    ]
    found = re.findall(r"ALTER ROLE (\w+) CONNECTION LIMIT (\d+);", roles_sql)
    return {name: int(limit) for name, limit in found}


@dataclass(frozen=True)
class Phase:
    """What one change of release did to the load and the writers."""

    name: str
    probe: LoadProbe
    applied_at_s: float  # on the probe's clock
    serving_at_s: float
    answers: Counter[str]
    acknowledged: int
    present: int
    lost: list[int]
    timeline: Path


def change_under_load(
    deployed: Deployment, api: client.ApiClient, cluster: GateCluster, name: str, documents
) -> Phase:
    """`documents` applied over the namespace while the load runs and writers insert into a
    table of the phase's own."""
    table = re.sub(r"\W+", "_", name).strip("_")
    assert deployed.query(f"create table {table} (id bigint primary key)").status_code == 200
    probe = deployed.load_probe()  # the release's own NodePort
    with (
        measured_load(probe, deployed.apps, deployed.namespace, names.GATEWAY) as measured,
        Writers(deployed, table) as writers,
    ):
        time.sleep(SETTLE_S)
        applied_at_s = measured.mark(f"apply {name}")
        run_harness(deploy.apply_over, api, cluster, deployed.namespace, name, documents)
        serving_at_s = measured.mark(f"{name} serving")
        time.sleep(SETTLE_S)
    timeline, _ = write_timeline(paths.E2E_ARTIFACTS, f"upgrade-{table}", measured)
    present, lost = writers.lost()
    answers = Counter(str(status) for status in writers.answers.values())
    print(
        f"\n{name}: {measured.summary()}; writers {dict(answers)}, "
        f"{len(writers.acknowledged())} acknowledged, {present} rows, {len(lost)} "
        f"acknowledged and lost; timeline {timeline}"
    )
    acknowledged = len(writers.acknowledged())
    return Phase(
        name, probe, applied_at_s, serving_at_s, answers, acknowledged, present, lost, timeline
    )


def while_postgres_restarted(phase: Phase, sample: Sample) -> bool:
    """A failure PostgreSQL's restart explains: an answer it leads to, from a request in
    flight between the apply and the release serving."""
    ended_at_s = sample.at_s + sample.latency_ms / 1000
    in_window = ended_at_s >= phase.applied_at_s and sample.at_s <= phase.serving_at_s
    return sample.status in DURING_A_RESTART and in_window


def test_upgrade_from_the_previous_release_and_back_loses_nothing(
    request: pytest.FixtureRequest,
    kind_cluster: GateCluster,
    api: client.ApiClient,
    gateway_images: dict[str, str],
    releases: dict[str, tuple[Path, list[dict]]],
) -> None:
    (previous_name, (previous_overlay, previous)), (this_name, (_, this)) = releases.items()
    namespace = f"pgw-e2e-upgrade-{secrets.token_hex(3)}"
    deployed = deployment_beside(request, kind_cluster, api, gateway_images, namespace)
    template = upgrade.postgres_pod_template
    restarts_postgres = template(previous) != template(this)
    try:
        run_harness(
            deploy.deploy,
            api,
            kind_cluster,
            namespace,
            previous_overlay,
            {},
            deployed.credentials,
            previous,
        )
        for sql in (
            "create table written_before (id int)",
            f"insert into written_before select generate_series(1, {ROWS_BEFORE})",
        ):
            written = deployed.query(sql)
            assert written.status_code == 200, written.text
        upgraded = change_under_load(deployed, api, kind_cluster, this_name, this)
        limits_after_upgrade = connection_limits(deployed)
        rolled_back = change_under_load(deployed, api, kind_cluster, previous_name, previous)
        before = deployed.query_once_served("select count(*) as n from written_before")
    except BaseException:
        directory = paths.E2E_ARTIFACTS / namespace
        diagnostics.collect(namespace, deployed.kubeconfig, directory)
        print(f"diagnostics of {namespace} saved under {directory}")
        raise
    finally:
        if not keep_deployment(request.config):
            deployed.core.delete_namespace(namespace)

    print(
        f"PostgreSQL's pod template {'differs' if restarts_postgres else 'is the same'} "
        f"between the releases; connection limits after the upgrade {limits_after_upgrade}"
    )
    for phase in (upgraded, rolled_back):
        where = f"{phase.name} ({phase.timeline})"
        assert not phase.lost, f"{where}: acknowledged inserts lost: {phase.lost[:20]}"
        assert phase.acknowledged > 0, f"{where}: no insert was acknowledged"
        if restarts_postgres:
            failures = phase.probe.failures
            unexpected = [s for s in failures if not while_postgres_restarted(phase, s)]
            assert not unexpected, f"{where}: {unexpected[:5]}"
            assert "500" not in phase.answers, f"{where}: an insert answered 500"
        else:
            assert phase.probe.failures == [], f"{where}: {phase.probe.failures[:5]}"
            assert set(phase.answers) == {"200"}, f"{where}: inserts {dict(phase.answers)}"
    assert before["result"] == [{"n": ROWS_BEFORE}], before
    assert limits_after_upgrade == roles_sql_limits(this), (
        "PostgreSQL kept the previous release's connection limits: this release's roles.sql "
        "never reached the data directory"
    )
    for phase in (upgraded, rolled_back):
        phase.probe.require_rate()
