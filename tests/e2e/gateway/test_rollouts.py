"""Check 2: three consecutive rollouts under load, with zero failed requests.

While 4 clients send 40 requests per second through the NodePort, the Deployment rolls
to a new image tag, is restarted, and gets a configuration change. A watch on the
Deployment records `availableReplicas`, which must never drop below 1; the request
timeline (CSV and PNG) is saved under artifacts/e2e/.
"""

from __future__ import annotations

import datetime
import time

from harness import names, paths
from harness.e2e import deploy
from harness.e2e.availability import LoadProbe, ReplicaWatch, write_timeline

CLIENTS = 4
RATE_PER_S = 40.0
SETTLE_S = 3.0


def _rollouts(deployment) -> list[tuple[str, dict]]:
    restarted_at = datetime.datetime.now(datetime.UTC).isoformat()
    container = {"name": names.GATEWAY_CONTAINER, "image": deployment.images["second"]}
    config = {
        "name": names.GATEWAY_CONTAINER,
        "env": [{"name": "STATEMENT_TIMEOUT_MS", "value": "6000"}],
    }
    return [
        ("new image tag", {"spec": {"template": {"spec": {"containers": [container]}}}}),
        (
            "rollout restart",
            {
                "spec": {
                    "template": {
                        "metadata": {
                            "annotations": {"kubectl.kubernetes.io/restartedAt": restarted_at}
                        }
                    }
                }
            },
        ),
        ("config change", {"spec": {"template": {"spec": {"containers": [config]}}}}),
    ]


def test_three_rollouts_keep_the_service_available(deployment) -> None:
    probe = LoadProbe(
        "127.0.0.1",
        names.NODE_PORT,
        deployment.credentials.admin_token,
        clients=CLIENTS,
        rate_per_s=RATE_PER_S,
    )
    probe.start()
    replicas = ReplicaWatch(deployment.apps, deployment.namespace, names.GATEWAY, probe.origin)
    replicas.start()
    marks: list[tuple[float, str]] = []
    try:
        time.sleep(SETTLE_S)
        for label, patch in _rollouts(deployment):
            marks.append((probe.elapsed_s(), label))
            deployment.apps.patch_namespaced_deployment(names.GATEWAY, deployment.namespace, patch)
            deploy.wait_rolled_out(deployment.apps, deployment.namespace)
            marks.append((probe.elapsed_s(), f"{label} done"))
        time.sleep(SETTLE_S)
    finally:
        probe.stop()
        replicas.stop()
    csv_path, png_path = write_timeline(paths.E2E_ARTIFACTS, probe, replicas, marks)
    duration = probe.elapsed_s()
    failures = probe.failures
    print(
        f"\nrollouts: {len(probe.samples)} requests in {duration:.1f} s "
        f"({len(probe.samples) / duration:.1f}/s, {CLIENTS} clients), {len(failures)} failed, "
        f"min availableReplicas {replicas.min_available}; timeline: {csv_path}, {png_path}"
    )
    assert len(probe.samples) / duration >= 20
    assert replicas.events, "the Deployment watch saw no status"
    assert replicas.min_available >= 1
    assert failures == [], failures[:5]
