"""Check 8: the front door, through the NodePort as clients see it. The operations endpoints
are not on the data port, and a flood of idle connections (no token needed) restarts no pod
and fails no request of the ordinary load.

At 017843a the probes shared the data port's connections: a few hundred idle sockets made
the kubelet's probes time out, took the pods out of the Service and restarted them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

import requests

from harness import names
from harness.e2e.availability import measured_load

# Four times what the pods held at 017843a (2 pods x 2 workers x 100), within what they hold
# now (2 x 2 x WORKER_CONNECTIONS 1,000): the flood the manifests are sized for. Beyond it
# workers shed connections, which tests/integration/test_front_door.py measures.
FLOOD = 1600
HOLD_S = 40  # longer than three failed liveness probes take (3 x 10 s)


def test_the_data_port_serves_no_operations_endpoint(deployment) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = requests.get(f"http://127.0.0.1:{names.NODE_PORT}{path}", timeout=5)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.json()["error"]["message"]
    service = deployment.core.read_namespaced_service(names.GATEWAY, deployment.namespace)
    assert [port.target_port for port in service.spec.ports] == ["http"]


class IdleFlood:
    """`count` connections that send nothing, each replaced by a new one after LIFETIME_S, so
    the pods always see them all although their keep-alive timeout (5 s) ends each one: the
    proxies on the way (the node's published port) do not pass that close on to us."""

    LIFETIME_S = 4.0
    TICK_S = 0.2

    def __init__(self, host: str, port: int, count: int) -> None:
        self._address = (host, port)
        self._count = count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.opened = 0

    def __enter__(self) -> IdleFlood:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _open(self) -> socket.socket:
        self.opened += 1
        return socket.create_connection(self._address, timeout=5)

    def _run(self) -> None:
        held = deque(self._open() for _ in range(self._count))
        per_tick = max(1, round(self._count * self.TICK_S / self.LIFETIME_S))
        while not self._stop.wait(self.TICK_S):
            for _ in range(per_tick):
                held.popleft().close()
                held.append(self._open())
        for sock in held:
            sock.close()


def _restarts(deployment) -> dict[str, int]:
    return {
        pod.metadata.name: sum(status.restart_count for status in pod.status.container_statuses)
        for pod in deployment.gateway_pods()
    }


def test_a_flood_of_idle_connections_restarts_no_pod(deployment) -> None:
    before = _restarts(deployment)
    probe = deployment.load_probe()
    load = measured_load(probe, deployment.apps, deployment.namespace, names.GATEWAY)
    with load as measured, IdleFlood("127.0.0.1", names.NODE_PORT, FLOOD) as flood:
        time.sleep(HOLD_S)
    after = _restarts(deployment)
    print(
        f"\nidle flood through the NodePort: {FLOOD} held at once, {flood.opened} opened over "
        f"{HOLD_S} s, beside the ordinary load ({measured.summary()}); restarts {before} -> "
        f"{after}"
    )
    assert after == before, "a pod restarted under a flood of idle connections"
    assert probe.failures == [], probe.failures[:5]
    assert measured.replicas.min_ready >= 2, "a pod left the Service under the flood"
    probe.require_rate()
