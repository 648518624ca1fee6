"""Check 2: three consecutive rollouts under load, with zero failed requests.

While the load of `harness.e2e.availability` (keep-alive, new-connection and slow-query
clients, about 200 requests/s) goes through the NodePort, the Deployment rolls to a new
image tag, is restarted, and gets a configuration change. A watch on the Deployment records
`availableReplicas`, which must never drop below 1; the request timeline (CSV and PNG) is
saved under artifacts/e2e/.
"""

from __future__ import annotations

import datetime
import time

from harness import names, paths
from harness.e2e import deploy
from harness.e2e.availability import measured_load, write_timeline

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
    probe = deployment.load_probe()
    with measured_load(probe, deployment.apps, deployment.namespace, names.GATEWAY) as measured:
        time.sleep(SETTLE_S)
        for label, patch in _rollouts(deployment):
            measured.mark(label)
            deployment.apps.patch_namespaced_deployment(names.GATEWAY, deployment.namespace, patch)
            deploy.wait_rolled_out(deployment.apps, deployment.namespace)
            measured.mark(f"{label} done")
        time.sleep(SETTLE_S)
    csv_path, png_path = write_timeline(paths.E2E_ARTIFACTS, "rollout-timeline", measured)
    print(f"\nrollouts: {measured.summary()}; timeline: {csv_path}, {png_path}")
    assert measured.replicas.events, "the Deployment watch saw no status"
    assert measured.replicas.min_available >= 1
    assert probe.failures == [], probe.failures[:5]
    probe.require_rate()
