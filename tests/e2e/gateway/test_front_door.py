"""Check 8: the front door, through the NodePort as clients see it. The operations endpoints
are not on the data port, and a flood of idle connections (no token needed) restarts no pod
and fails no request of the ordinary load.

At 017843a the probes shared the data port's connections: a few hundred idle sockets made
the kubelet's probes time out, took the pods out of the Service and restarted them.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import requests

from harness import names
from harness.e2e.availability import LoadProbe, measured_load

FLOOD = 5000  # more than the two pods hold (2 pods x 2 workers x WORKER_CONNECTIONS 1000)
HOLD_S = 40  # longer than three failed liveness probes take (3 x 10 s)


def test_the_data_port_serves_no_operations_endpoint(deployment) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = requests.get(f"http://127.0.0.1:{names.NODE_PORT}{path}", timeout=5)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.json()["error"]["message"]
    service = deployment.core.read_namespaced_service(names.GATEWAY, deployment.namespace)
    assert [port.target_port for port in service.spec.ports] == ["http"]


class IdleFlood:
    """Connections that send nothing, re-opened as soon as the server closes one."""

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
        held = [self._open() for _ in range(self._count)]
        while not self._stop.wait(0.2):
            closed, _, _ = select.select(held, [], [], 0)
            for sock in closed:  # readable with nothing sent: the server hung up
                held.remove(sock)
                sock.close()
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
    probe = LoadProbe("127.0.0.1", names.NODE_PORT, deployment.credentials.admin_token)
    load = measured_load(probe, deployment.apps, deployment.namespace, names.GATEWAY)
    with load as measured, IdleFlood("127.0.0.1", names.NODE_PORT, FLOOD) as flood:
        time.sleep(HOLD_S)
    after = _restarts(deployment)
    print(
        f"\nidle flood through the NodePort: {flood.opened} connections opened over "
        f"{HOLD_S} s beside the ordinary load ({measured.summary()}); restarts {before} -> "
        f"{after}"
    )
    assert after == before, "a pod restarted under a flood of idle connections"
    assert probe.failures == [], probe.failures[:5]
    assert measured.replicas.min_ready >= 2, "a pod left the Service under the flood"
