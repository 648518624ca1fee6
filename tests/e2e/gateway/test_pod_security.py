"""Checks 4 and 5: NetworkPolicy (who reaches PostgreSQL, where the app's pods may connect
to), and the running gateway pod itself.

The egress checks connect from a gateway pod to what it needs (the cluster DNS, PostgreSQL)
and to decoys that answer anyone else (a Service in another namespace, the node's address,
a link-local address put on the node's loopback), so a failed connection is the policy's
doing; a pod no policy selects proves the decoys answer. Every target is in the cluster.

The pod checks use pytest-testinfra's kubectl backend: they read the container from inside
(through /proc, as the slim image has no ps or ss).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import testinfra
from kubernetes import client

from harness import cluster, kube, names

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
# Resolves argv[2], then connects to each further host:port, trying for up to argv[1]
# seconds; PostgreSQL's port is asked for its SSL answer (one byte, no login needed).
# Prints one JSON object after a prefix: the Kubernetes client turns a log or exec output
# that parses as JSON into a Python repr.
EGRESS = """
import json, socket, sys, time
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
def attempt(target):
    host, port = target.rsplit(":", 1)
    payload = SSL_REQUEST if port == "5432" else b""
    deadline = time.monotonic() + float(sys.argv[1])
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=3) as conn:
                conn.sendall(payload)
                return "answered " + conn.recv(1).decode() if payload else "connected"
        except OSError as error:
            if time.monotonic() > deadline:
                return f"failed: {error}"
            time.sleep(0.5)
try:
    dns = sorted({info[4][0] for info in socket.getaddrinfo(sys.argv[2], None)})
except OSError as error:
    dns = f"failed: {error}"
print("egress:", json.dumps({"dns": dns, "connections": {t: attempt(t) for t in sys.argv[3:]}}))
"""
# Accepts connections and closes them: the decoy another namespace's Service leads to.
DECOY = """
import socket
server = socket.create_server(("", 8080))
while True:
    server.accept()[0].close()
"""
LINK_LOCAL = "169.254.169.254"  # where clouds serve instance metadata (and credentials)
KUBELET_PORT = 10250
POD_TIMEOUT_S = 120


def python_pod(deployment, name: str, labels: dict[str, str], *argv: str) -> client.V1Pod:
    """A pod of the gateway image (locked down like the gateway) that runs `python -c`."""
    security = client.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=10001,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="probe",
                    image=deployment.images["first"],
                    image_pull_policy="IfNotPresent",
                    command=["python", "-c", *argv],
                    security_context=security,
                )
            ],
        ),
    )


def run_to_completion(deployment, pod: client.V1Pod) -> str:
    """Run a one-shot pod in the deployment's namespace: `Phase: its log`."""
    phase, log = kube.run_pod(deployment.core, deployment.namespace, pod, POD_TIMEOUT_S)
    return f"{phase}: {log.strip()}"


# The one-shot pods of the two ingress checks, by key: (labels, host, port or None for the
# operations port of a gateway pod). They run at once: a denied one takes its 15 s.
STRANGER = {"role": "stranger"}
CONNECTIONS = {
    "stranger to postgres": (STRANGER, names.POSTGRES, names.POSTGRES_PORT),
    "lookalike to postgres": (
        {names.NAME_LABEL: names.GATEWAY},
        names.POSTGRES,
        names.POSTGRES_PORT,
    ),
    "stranger to the operations port": (STRANGER, None, names.OPS_PORT),
    "prometheus to the operations port": ({names.NAME_LABEL: "prometheus"}, None, names.OPS_PORT),
    "stranger to the data port": (STRANGER, None, names.GATEWAY_PORT),
}


@pytest.fixture(scope="module")
def connections(deployment) -> dict[str, str]:
    """Each of CONNECTIONS tried from a pod of its own, all at once (a gateway pod's address
    for None): `Phase: its log` by key."""
    suffix = str(int(time.time()))
    pod_ip = deployment.gateway_pods()[0].status.pod_ip

    def attempt(key: str, labels: dict[str, str], host: str | None, port: int) -> str:
        name = f"{key.split()[0]}-{list(CONNECTIONS).index(key)}-{suffix}"
        pod = python_pod(deployment, name, labels, CONNECT, host or pod_ip, str(port))
        return run_to_completion(deployment, pod)

    with ThreadPoolExecutor(len(CONNECTIONS)) as pool:
        futures = {key: pool.submit(attempt, key, *how) for key, how in CONNECTIONS.items()}
        return {key: future.result() for key, future in futures.items()}


def test_network_policy_admits_only_gateway_pods_to_postgres(connections) -> None:
    assert connections["stranger to postgres"].startswith("Failed"), connections
    assert connections["lookalike to postgres"] == "Succeeded: connected", connections


def test_network_policy_admits_only_prometheus_to_the_operations_port(connections) -> None:
    """The operations port (health, readiness, metrics: the logins' and tokens' names) is not
    in the Service, and inside the cluster only Prometheus's pods reach it."""
    assert connections["stranger to the operations port"].startswith("Failed"), connections
    assert connections["prometheus to the operations port"] == "Succeeded: connected", connections
    # The data port admits anyone.
    assert connections["stranger to the data port"] == "Succeeded: connected", connections


@dataclass(frozen=True)
class Outside:
    """Decoys outside what the gateway may reach, each answering anyone allowed to connect."""

    service_name: str  # a Service of another namespace, by its DNS name
    service: str  # host:port of the same Service's ClusterIP
    node: str  # host:port of the kubelet on the node's own address
    link_local: str  # host:port of the kubelet on LINK_LOCAL, on the node's loopback

    def targets(self) -> list[str]:
        return [self.service, self.node, self.link_local]


@pytest.fixture(scope="module")
def outside(deployment) -> Iterator[Outside]:
    core = deployment.core
    namespace = f"pgw-egress-{secrets.token_hex(4)}"
    # The e2e label: a namespace left behind by a killed run goes with the next run's cleanup.
    labels = {names.E2E_LABEL: "true", names.PART_OF_LABEL: names.APP}
    meta = client.V1ObjectMeta(name=namespace, labels=labels)
    core.create_namespace(client.V1Namespace(metadata=meta))
    try:
        kube.wait_for(
            core.list_namespaced_service_account,
            namespace,
            "default",
            lambda _account: True,
            f"ServiceAccount default in {namespace}",
            POD_TIMEOUT_S,
        )
        core.create_namespaced_pod(
            namespace, python_pod(deployment, "decoy", {"app": "decoy"}, DECOY)
        )
        service = core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="decoy"),
                spec=client.V1ServiceSpec(
                    selector={"app": "decoy"}, ports=[client.V1ServicePort(port=8080)]
                ),
            ),
        )
        node = core.read_node(deployment.gateway_pods()[0].spec.node_name)
        node_ip = kube.node_address(node)
        with cluster.loopback_address(LINK_LOCAL):
            yield Outside(
                service_name=f"decoy.{namespace}.svc.cluster.local",
                service=f"{service.spec.cluster_ip}:8080",
                node=f"{node_ip}:{KUBELET_PORT}",
                link_local=f"{LINK_LOCAL}:{KUBELET_PORT}",
            )
    finally:
        core.delete_namespace(namespace)


def test_decoys_answer_a_pod_no_policy_selects(deployment, outside: Outside) -> None:
    """Without a policy every decoy answers: a refusal in the next check is the policy's."""
    name = f"unconfined-{int(time.time())}"
    argv = (EGRESS, "30", outside.service_name, *outside.targets())
    pod = python_pod(deployment, name, {"role": "unconfined"}, *argv)
    output = run_to_completion(deployment, pod)
    assert output.startswith("Succeeded: egress: "), output
    result = json.loads(output.partition("egress: ")[2])
    print(f"\negress of a pod no policy selects: {json.dumps(result, indent=2)}")
    assert result["connections"] == dict.fromkeys(outside.targets(), "connected"), result


def test_gateway_egress_reaches_dns_and_postgres_only(deployment, outside: Outside) -> None:
    pod = deployment.gateway_pods()[0]
    postgres = f"{names.POSTGRES}:{names.POSTGRES_PORT}"
    output = kube.exec_output(
        deployment.core,
        deployment.namespace,
        pod.metadata.name,
        names.GATEWAY_CONTAINER,
        "python",
        "-c",
        EGRESS,
        "0",  # no retries: the policies were in force before the pod was ready
        outside.service_name,
        postgres,
        *outside.targets(),
    )
    assert "egress: " in output, output
    result = json.loads(output.partition("egress: ")[2])
    print(f"\negress of gateway pod {pod.metadata.name}: {json.dumps(result, indent=2)}")
    connections = result["connections"]
    assert outside.service.split(":")[0] in result["dns"], result  # DNS answers, any name
    assert connections.pop(postgres) in {"answered N", "answered S"}, result
    reached = [target for target, answer in connections.items() if answer == "connected"]
    assert reached == [], f"the gateway reached {reached} outside its egress policy: {result}"


def test_postgres_egress_reaches_nothing(deployment, outside: Outside) -> None:
    """PostgreSQL needs no DNS and starts no connection: the cluster DNS is out of reach too."""
    dns = deployment.core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
    reached = kube.connections_from(
        deployment.core,
        deployment.namespace,
        names.POSTGRES_POD,
        names.POSTGRES_CONTAINER,
        [f"{dns}:53", *outside.targets()],
    )
    print(f"\negress of {names.POSTGRES_POD}: {reached}")
    assert not any(reached.values()), reached


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


def test_gunicorn_listens_on_the_data_and_operations_ports(gateway_host) -> None:
    cmdline = gateway_host.file("/proc/1/cmdline").content_string.replace("\0", " ")
    assert "-m app" in cmdline
    listening = gateway_host.file("/proc/net/tcp").content_string.splitlines()[1:]
    local_ports = {
        int(fields[1].split(":")[1], 16)
        for fields in (line.split() for line in listening)
        if fields[3] == "0A"  # TCP_LISTEN
    }
    assert {names.GATEWAY_PORT, names.OPS_PORT} <= local_ports
