"""Check 3: PostgreSQL going away loses no acknowledged row and takes the gateway out of service.

When the PostgreSQL pod is deleted, the gateway must answer 503 (never 500) while it is
gone: asked directly inside a gateway pod (the Service may have no ready endpoints then,
which is the readiness probe doing its job) and through the NodePort. Once PostgreSQL is
back, every row is there and the gateway serves again through the NodePort within 30 s.

A pod restart can be quicker than two failed readiness probes, so whether readiness takes
the gateway out of the Service is checked apart: with PostgreSQL scaled to zero, no gateway
pod may stay ready.
"""

from __future__ import annotations

import json
import time

import requests

from harness import kube, names
from harness.e2e import deploy
from harness.e2e.plugin import run_harness

ROWS = 200
RECOVERY_LIMIT_S = 30.0
OUTAGE_TIMEOUT_S = 180.0
# Two failed readiness probes 2 s apart, each given 2 s, plus the kubelet's report.
NOT_READY_TIMEOUT_S = 30.0

# Runs inside a gateway pod (argv[1], argv[2]: its local data and operations URLs); the
# token comes from the pod's own environment.
PROBE_INSIDE = """
import json, os, sys, urllib.error, urllib.request
DATA, OPS = sys.argv[1], sys.argv[2]
token = os.environ["API_TOKENS"].split(",")[0].split(":")[0]
def status(url, body=None):
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
print(json.dumps([status(OPS + "/readyz"), status(DATA + "/query", b'{"query": "select 1"}')]))
"""


def inside_gateway(deployment) -> tuple[int, int]:
    pod = deployment.gateway_pods()[0].metadata.name
    output = kube.exec_output(
        deployment.core,
        deployment.namespace,
        pod,
        names.GATEWAY_CONTAINER,
        "python",
        "-c",
        PROBE_INSIDE,
        f"http://127.0.0.1:{names.GATEWAY_PORT}",
        f"http://127.0.0.1:{names.OPS_PORT}",
    )
    readyz, query = json.loads(output.strip().splitlines()[-1])
    return readyz, query


def through_service(deployment) -> int | str:
    try:
        return deployment.query("select count(*) as n from durable").status_code
    except requests.RequestException as error:
        return type(error).__name__  # no ready endpoint: refused or timed out, not a 500


def test_rows_survive_postgres_pod_deletion(deployment) -> None:
    assert deployment.query("create table durable (id int primary key, note text)").ok
    for i in range(ROWS):
        response = deployment.query("insert into durable values (%s, %s)", params=[i, f"row {i}"])
        assert response.status_code == 200, f"row {i} not acknowledged: {response.text}"

    core, namespace = deployment.core, deployment.namespace
    old_uid = core.read_namespaced_pod(names.POSTGRES_POD, namespace).metadata.uid
    deleted_at = time.monotonic()
    core.delete_namespaced_pod(names.POSTGRES_POD, namespace)

    inside: list[tuple[int, int]] = []
    outside: list[int | str] = []
    postgres_ready_at = None
    served_at = None
    while served_at is None:
        assert time.monotonic() - deleted_at < OUTAGE_TIMEOUT_S, (inside, outside)
        if postgres_ready_at is None:
            pod = kube.read_pod(core, namespace, names.POSTGRES_POD)
            if pod is not None and pod.metadata.uid != old_uid and kube.pod_ready(pod):
                postgres_ready_at = time.monotonic()
            else:
                inside.append(inside_gateway(deployment))
        status = through_service(deployment)
        outside.append(status)
        # Any answer but 503 once PostgreSQL is back ends the outage: a 400 (no such table)
        # is lost data, which the count below reports, and need not wait out the timeout.
        answered = isinstance(status, int) and status != 503
        if answered and postgres_ready_at is not None:
            served_at = time.monotonic()
        else:
            time.sleep(0.5)

    print(
        f"\ndurability: outage {served_at - deleted_at:.1f} s from pod deletion to the first "
        f"answer; served {served_at - postgres_ready_at:.1f} s after PostgreSQL was ready; "
        f"inside a gateway pod (readyz, query): {sorted(set(inside))}; "
        f"through the Service: {sorted(set(map(str, outside)))}"
    )
    assert 500 not in outside
    assert all(500 not in pair for pair in inside)
    assert (503, 503) in inside, "the gateway never answered 503 while PostgreSQL was gone"
    assert served_at - postgres_ready_at <= RECOVERY_LIMIT_S
    count = deployment.query_once_served("select count(*) as n, max(id) as last from durable")
    assert count == {"result": [{"n": ROWS, "last": ROWS - 1}]}, "acknowledged rows were lost"


def scale_postgres(deployment, replicas: int) -> None:
    deployment.apps.patch_namespaced_stateful_set_scale(
        names.POSTGRES, deployment.namespace, {"spec": {"replicas": replicas}}
    )


def test_readiness_takes_the_gateway_out_while_postgres_is_down(deployment) -> None:
    scale_postgres(deployment, 0)
    try:
        run_harness(
            kube.wait_for,
            deployment.apps.list_namespaced_deployment,
            deployment.namespace,
            names.GATEWAY,
            lambda gateway: not gateway.status.ready_replicas,
            "no gateway pod ready while PostgreSQL is scaled to zero",
            NOT_READY_TIMEOUT_S,
        )
    finally:
        scale_postgres(deployment, 1)
        run_harness(deploy.wait_serving, deployment.api, deployment.namespace)
