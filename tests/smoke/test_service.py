"""The gateway as its clients meet it: the Service answers (and not with the operations
endpoints), a round trip in a scratch table, no token no answer, and /metrics as Prometheus
scrapes it, from a pod's operations port."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from kubernetes import client

from harness import kube, names
from harness.smoke.plugin import harness_call

# A scraper's view: a pod of the namespace labelled as Prometheus (which the gateway's
# NetworkPolicy admits to its operations port) and without the app's labels (so none of its
# policies restrict its own egress), on the gateway's image (which has python, no curl), GETs
# a Ready gateway pod's /metrics and prints what came. A new pod's address reaches the
# policy's rules a moment after it starts (refused 3 of 3 times against a deploy.sh
# namespace when asked once), so a connection error is asked again for up to 15 s, as the
# e2e policy checks do.
METRICS_FROM_INSIDE = """
import json, sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 15
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
            lines = answer.read().decode().splitlines()
            print(json.dumps({"status": answer.status, "lines": lines}))
        break
    except urllib.error.HTTPError as error:
        print(json.dumps({"status": error.code, "lines": []}))
        break
    except OSError as error:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
            break
        time.sleep(0.5)
"""
GATEWAY_PODS = f"{names.NAME_LABEL}={names.GATEWAY}"
PROBE_RESOURCES = {"cpu": "100m", "memory": "64Mi"}


def body_of(response: requests.Response) -> Any:
    """The JSON of a 200, or a failure that says what came instead."""
    assert response.status_code == 200, (
        f"{response.request.method} {response.url}: {response.status_code} {response.text[:200]}"
    )
    return response.json()


def test_service_answers(gateway) -> None:
    """The Service answers; health, readiness and metrics are on a port it does not lead to."""
    body_of(gateway.get("/openapi.json"))
    for path in ("/healthz", "/readyz", "/metrics"):
        response = gateway.get(path)
        assert response.status_code == 404, (
            f"GET {path} through the Service answered {response.status_code}: the operations "
            "endpoints must not be reachable there"
        )


@dataclass
class ScratchTable:
    """A table of a name no one else uses; `may_exist` once its create was sent."""

    name: str
    may_exist: bool = False


@pytest.fixture
def scratch_table(gateway) -> Iterator[ScratchTable]:
    """Dropped afterwards if the check did not get to drop it, whatever else failed."""
    table = ScratchTable(f"smoke_{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}")
    yield table
    if table.may_exist:
        response = gateway.query(f"drop table if exists {table.name}")
        assert response.status_code == 200, (
            f"scratch table {table.name} not dropped ({response.status_code}): drop it by hand"
        )


def test_round_trip(gateway, scratch_table) -> None:
    """A round trip: create, insert, select, drop in a scratch table."""
    table = scratch_table.name
    scratch_table.may_exist = True
    create = f"create table {table} (id serial primary key, note text not null)"
    assert body_of(gateway.query(create)) == {"result": "OK"}
    insert = f"insert into {table} (note) values (%s)"
    assert body_of(gateway.query(insert, params=[table])) == {"result": "OK"}
    rows = body_of(gateway.query(f"select id, note from {table}"))
    assert rows == {"result": [{"id": 1, "note": table}]}, f"select answered {rows}"
    assert body_of(gateway.query(f"drop table {table}")) == {"result": "OK"}
    scratch_table.may_exist = False


def test_requests_without_a_valid_token_get_401(gateway) -> None:
    """No token or a wrong one: 401."""
    for token, what in ((None, "no token"), ("not-a-token", "a wrong token")):
        response = gateway.query("select 1", token=token)
        assert response.status_code == 401, (
            f"/query with {what} answered {response.status_code}, not 401"
        )


def metrics_probe(apps, core, namespace: str) -> tuple[client.V1Pod, str]:
    """A one-shot pod like the gateway's (image, security context), labelled as Prometheus,
    and the URL it asks: a Ready gateway pod's /metrics on the operations port.

    The image is a Ready gateway pod's, which its node has already pulled (the template's,
    while a rollout to a broken image hangs, may not even exist), else the template's.
    """
    template = apps.read_namespaced_deployment(names.GATEWAY, namespace).spec.template
    pods = core.list_namespaced_pod(namespace, label_selector=GATEWAY_PODS).items
    ready = [pod for pod in pods if kube.pod_ready(pod)]
    specs = [pod.spec for pod in ready] + [template.spec]
    image = next(c.image for c in specs[0].containers if c.name == names.GATEWAY_CONTAINER)
    address = ready[0].status.pod_ip if ready else "no-ready-gateway-pod"
    url = f"http://{address}:{names.OPS_PORT}/metrics"
    gateway = next(c for c in template.spec.containers if c.name == names.GATEWAY_CONTAINER)
    probe = client.V1Container(
        name="metrics-probe",
        image=image,
        image_pull_policy=gateway.image_pull_policy,
        command=["python", "-c", METRICS_FROM_INSIDE, url],
        security_context=gateway.security_context,
        resources=client.V1ResourceRequirements(requests=PROBE_RESOURCES, limits=PROBE_RESOURCES),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=f"smoke-metrics-{secrets.token_hex(3)}",
            labels={names.NAME_LABEL: "prometheus"},
        ),
        spec=client.V1PodSpec(
            containers=[probe],
            restart_policy="Never",
            automount_service_account_token=False,
            security_context=template.spec.security_context,
        ),
    )
    return pod, url


def test_metrics_as_prometheus_scrapes_them(apps, core, namespace, wait) -> None:
    """/metrics answers on a pod's operations port, to a pod labelled as Prometheus."""
    pod, url = metrics_probe(apps, core, namespace)
    where = f"{url} from pod {pod.metadata.name}"
    _phase, output = harness_call(kube.run_pod, core, namespace, pod, wait)
    try:
        answer = json.loads(output.strip().splitlines()[-1])
    except (IndexError, ValueError):
        pytest.fail(f"{where}: the probe printed {output[-300:]!r}", pytrace=False)
    assert "error" not in answer, f"{where}: {answer.get('error')}"
    assert answer["status"] == 200, f"{where}: {answer['status']}"
    samples = [line for line in answer["lines"] if line.startswith("gateway_requests_total{")]
    assert samples, f"{where}: no gateway_requests_total samples"
