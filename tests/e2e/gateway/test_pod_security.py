"""Checks 4 and 5: NetworkPolicy around PostgreSQL, and the running gateway pod itself.

The pod checks use pytest-testinfra's kubectl backend: they read the container from inside
(through /proc, as the slim image has no ps or ss).
"""

from __future__ import annotations

import time

import pytest
import testinfra
from kubernetes import client

from harness import names
from harness.e2e import kube

# A new pod's IP reaches the policy rules a moment after the pod starts, so "allowed"
# means a connection within 15 s and "denied" means none in 15 s of trying (argv: host port).
CONNECT = """
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
        print("connected")
        sys.exit(0)
    except OSError as error:
        if time.monotonic() > deadline:
            print(error)
            sys.exit(1)
        time.sleep(0.5)
"""
POD_TIMEOUT_S = 120


def run_connect_pod(deployment, name: str, labels: dict[str, str]) -> str:
    """Run a one-shot pod (the gateway image, any labels) that connects to postgres:5432."""
    security = client.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=10001,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="probe",
                    image=deployment.images["first"],
                    image_pull_policy="IfNotPresent",
                    command=["python", "-c", CONNECT, names.POSTGRES, str(names.POSTGRES_PORT)],
                    security_context=security,
                )
            ],
        ),
    )
    deployment.core.create_namespaced_pod(deployment.namespace, pod)
    finished = kube.wait_for(
        deployment.core.list_namespaced_pod,
        deployment.namespace,
        name,
        lambda p: p.status.phase in {"Succeeded", "Failed"},
        f"pod/{name} finished",
        POD_TIMEOUT_S,
    )
    log = deployment.core.read_namespaced_pod_log(name, deployment.namespace)
    deployment.core.delete_namespaced_pod(name, deployment.namespace, grace_period_seconds=0)
    return f"{finished.status.phase}: {log.strip()}"


def test_network_policy_admits_only_gateway_pods_to_postgres(deployment) -> None:
    suffix = str(int(time.time()))
    stranger = run_connect_pod(deployment, f"stranger-{suffix}", {"role": "stranger"})
    assert stranger.startswith("Failed"), stranger
    lookalike = run_connect_pod(
        deployment, f"lookalike-{suffix}", {names.NAME_LABEL: names.GATEWAY}
    )
    assert lookalike == "Succeeded: connected", lookalike


@pytest.fixture
def gateway_host(deployment):
    pod = deployment.gateway_pods()[0].metadata.name
    return testinfra.get_host(
        f"kubectl://{pod}?container={names.GATEWAY_CONTAINER}&namespace={deployment.namespace}",
        kubeconfig=str(deployment.kubeconfig),
    )


def test_gateway_runs_as_non_root(gateway_host) -> None:
    status = gateway_host.file("/proc/1/status").content_string
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {"10001"}
    assert gateway_host.check_output("id -u") == "10001"


def test_root_filesystem_is_read_only(gateway_host) -> None:
    assert "ro" in gateway_host.mount_point("/").options
    assert gateway_host.run("touch /should-not-exist").rc != 0
    assert gateway_host.run("touch /tmp/ok && rm /tmp/ok").rc == 0


def test_gunicorn_listens_on_5000(gateway_host) -> None:
    cmdline = gateway_host.file("/proc/1/cmdline").content_string.replace("\0", " ")
    assert "-m app" in cmdline
    listening = gateway_host.file("/proc/net/tcp").content_string.splitlines()[1:]
    local_ports = {
        int(fields[1].split(":")[1], 16)
        for fields in (line.split() for line in listening)
        if fields[3] == "0A"  # TCP_LISTEN
    }
    assert names.GATEWAY_PORT in local_ports
