"""The kind cluster itself does what the gateway's deployment relies on.

The shape asked for (one control plane and PG_GATEWAY_WORKERS workers), nodes Ready, cluster
DNS, pods on different nodes reaching each other, locally built images served through a
NodePort on 127.0.0.1, default-StorageClass volumes that outlive their pod, and NetworkPolicy
enforced between pods on different nodes. Every target is loopback or a pod this run created.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from pytest_kind import KindCluster

from harness import cluster, kube, names
from harness.build import docker
from harness.cluster.shape import node_names
from harness.e2e.plugin import run_harness
from harness.steps import step

READY_TIMEOUT = 120
NODEPORT_TIMEOUT = 60
POLICY_TIMEOUT = 30


@dataclass(frozen=True)
class WebImage:
    """A locally built HTTP server image (in no registry) and what it serves."""

    tag: str
    marker: str
    port: int = 8080

    @property
    def command(self) -> list[str]:
        return ["httpd", "-f", "-p", str(self.port), "-h", "/www"]


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for these checks, deleted (with everything in it) afterwards."""
    name = f"e2e-cluster-{uuid.uuid4().hex[:8]}"
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e": "cluster"}))
    core.create_namespace(body)
    # Pods are refused until the controller manager has made the default ServiceAccount.
    kube.wait_for(
        core.list_namespaced_service_account,
        name,
        "default",
        lambda _account: True,
        f"ServiceAccount default in {name}",
        60,
    )
    yield name
    core.delete_namespace(name, propagation_policy="Foreground")


@pytest.fixture(scope="module")
def web_image(
    kind_cluster: cluster.GateCluster, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebImage]:
    """Build the web image from a generated context and load it with `kind load`."""
    marker = f"served-by-e2e-{uuid.uuid4().hex[:8]}"
    image = WebImage(tag=f"pg-gateway/e2e-web:{marker}", marker=marker)
    context = tmp_path_factory.mktemp("web-image")
    (context / "index.html").write_text(marker + "\n")
    (context / "Dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY index.html /www/index.html\nCMD {json.dumps(image.command)}\n"
    )
    run_harness(_build_image, context, image.tag)
    run_harness(kind_cluster.load_docker_image, image.tag)
    yield image
    run_harness(kind_cluster.remove_docker_image, image.tag)


def _build_image(context: Path, tag: str) -> None:
    with step(f"build {tag}") as current:
        docker.build(current, context, tag)


def _meta(name: str, **labels: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, labels=labels or None)


def _container(image: str, command: list[str], port: int | None = None) -> client.V1Container:
    return client.V1Container(
        name="main",
        image=image,
        image_pull_policy="Never",  # only images loaded with `kind load` exist
        command=command,
        ports=[client.V1ContainerPort(container_port=port, name="http")] if port else None,
    )


# Sleeps until TERM, so deleting the pod does not wait out the grace period.
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


# Pods bound to a node by name may run on the control plane, tainted once there are workers.
ANY_NODE = [client.V1Toleration(operator="Exists")]


def _pod(
    name: str, image: str, command: list[str], node: str | None = None, **labels: str
) -> client.V1Pod:
    """A pod; on `node` when given (bound by name, past the scheduler and the taints)."""
    return client.V1Pod(
        metadata=_meta(name, **labels),
        spec=client.V1PodSpec(
            containers=[_container(image, command)],
            restart_policy="Never",
            termination_grace_period_seconds=5,
            node_name=node,
            tolerations=ANY_NODE if node else None,
        ),
    )


def _nodes(core: client.CoreV1Api) -> list[str]:
    return sorted(node.metadata.name for node in core.list_node().items)


def _start_pod(core: client.CoreV1Api, namespace: str, pod: client.V1Pod) -> client.V1Pod:
    core.create_namespaced_pod(namespace, pod)
    name = pod.metadata.name
    return kube.wait_for(
        core.list_namespaced_pod,
        namespace,
        name,
        kube.pod_ready,
        f"pod {name} Ready",
        READY_TIMEOUT,
    )


def _exec(core: client.CoreV1Api, namespace: str, pod: str, script: str) -> str:
    return kube.exec_output(core, namespace, pod, None, "sh", "-c", script)


def test_the_cluster_is_pytest_kinds_and_its_kubectl_answers(
    kind_cluster: cluster.GateCluster,
) -> None:
    assert isinstance(kind_cluster, KindCluster)
    assert kind_cluster.name == names.CLUSTER
    nodes = kind_cluster.kubectl("get", "nodes", "-o", "name").split()
    assert nodes == [f"node/{node}" for node in node_names(kind_cluster.workers)]
    assert kind_cluster.nodes() == node_names(kind_cluster.workers)


def test_every_node_is_ready(core: client.CoreV1Api) -> None:
    nodes = core.list_node().items
    assert nodes, "the cluster has no nodes"
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}.get("Ready")
        assert ready == "True", f"node {node.metadata.name} is not Ready: {node.status.conditions}"


@pytest.mark.usefixtures("kind_cluster")  # one that failed to come up publishes no port
def test_node_publishes_the_gateway_node_port_on_loopback_only() -> None:
    published = cluster.published_ports()
    for port in names.PUBLISHED_PORTS:
        assert published.get(port) == f"127.0.0.1:{port}", published


def test_coredns_resolves_a_service_name_from_a_pod(
    core: client.CoreV1Api, namespace: str, busybox_image: str
) -> None:
    service = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=_meta("dns-target"),
            spec=client.V1ServiceSpec(
                selector={"app": "nothing"}, ports=[client.V1ServicePort(port=80)]
            ),
        ),
    )
    fqdn = f"dns-target.{namespace}.svc.cluster.local"
    probe = _start_pod(core, namespace, _pod("dns-probe", busybox_image, IDLE))
    # Bounded retries inside the pod: CoreDNS answers within its cache TTL.
    answer = _exec(
        core,
        namespace,
        probe.metadata.name,
        f"for i in 1 2 3 4 5 6 7 8 9 10; do nslookup {fqdn} && exit 0; sleep 1; done; exit 1",
    )
    assert service.spec.cluster_ip in answer, answer
    short = _exec(core, namespace, probe.metadata.name, "nslookup dns-target")
    assert service.spec.cluster_ip in short, short


# The web image's httpd in the background, then idle until TERM.
SERVE_AND_IDLE = ["sh", "-c", "httpd -p 8080 -h /www && " + IDLE[2]]


def test_pods_on_different_nodes_reach_each_other(
    core: client.CoreV1Api, namespace: str, web_image: WebImage
) -> None:
    """One pod a node, each fetching from every other: the network agent routes each node's
    pod subnet to the others (no policy selects these pods)."""
    pods = {
        node: _start_pod(
            core,
            namespace,
            _pod(f"mesh-{index}", web_image.tag, SERVE_AND_IDLE, node, app="mesh"),
        )
        for index, node in enumerate(_nodes(core))
    }
    request = r"printf 'GET / HTTP/1.0\r\n\r\n'"
    reached = {}
    for source, pod in pods.items():
        for target, other in pods.items():
            if target != source:
                fetch = f"{request} | nc -w 3 {other.status.pod_ip} {web_image.port} 2>&1"
                output = _exec(core, namespace, pod.metadata.name, fetch)
                reached[f"{source} -> {target}"] = web_image.marker in output
    print(f"\ncross-node pod-to-pod: {reached}")
    assert all(reached.values()), reached
    for pod in pods.values():
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


def test_locally_built_image_answers_http_through_node_port_on_loopback(
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    web_image: WebImage,
) -> None:
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=_meta("web", **labels),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=_meta("web", **labels),
                    spec=client.V1PodSpec(
                        containers=[_container(web_image.tag, web_image.command, web_image.port)]
                    ),
                ),
            ),
        ),
    )
    service = client.V1Service(
        metadata=_meta("web"),
        spec=client.V1ServiceSpec(
            type="NodePort",
            selector=labels,
            ports=[
                client.V1ServicePort(
                    port=80, target_port=web_image.port, node_port=names.SELF_TEST_NODE_PORT
                )
            ],
        ),
    )
    _wait_node_port_free(core, names.SELF_TEST_NODE_PORT)
    core.create_namespaced_service(namespace, service)
    try:
        kube.wait_for(
            apps.list_namespaced_deployment,
            namespace,
            "web",
            kube.deployment_rolled_out,
            "deployment web rolled out",
            READY_TIMEOUT,
        )
        body = _get_until_ok(f"http://127.0.0.1:{names.SELF_TEST_NODE_PORT}/", NODEPORT_TIMEOUT)
        assert web_image.marker in body
    finally:
        # Free the port now: the namespace itself takes a minute to go away.
        core.delete_namespaced_service("web", namespace)


def _wait_node_port_free(core: client.CoreV1Api, port: int) -> None:
    """A previous run's namespace may still be terminating with a Service on the port."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        holders = [
            f"{svc.metadata.namespace}/{svc.metadata.name}"
            for svc in core.list_service_for_all_namespaces().items
            if any(p.node_port == port for p in svc.spec.ports or [])
        ]
        if not holders:
            return
        time.sleep(2)
    raise AssertionError(f"NodePort {port} is still held by {holders}")


def _get_until_ok(url: str, timeout: float) -> str:
    """GET until it answers 200: kube-proxy programs the NodePort asynchronously."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = exc
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last_error}")


def test_statefulset_volume_survives_pod_deletion(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, busybox_image: str
) -> None:
    labels = {"app": "store"}
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=_meta("store", **labels),
            spec=client.V1StatefulSetSpec(
                service_name="store",
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=_meta("store", **labels),
                    spec=client.V1PodSpec(
                        termination_grace_period_seconds=5,
                        containers=[
                            client.V1Container(
                                name="main",
                                image=busybox_image,
                                image_pull_policy="Never",
                                command=IDLE,
                                volume_mounts=[
                                    client.V1VolumeMount(name="data", mount_path="/data")
                                ],
                            )
                        ],
                    ),
                ),
                volume_claim_templates=[
                    client.V1PersistentVolumeClaim(
                        metadata=_meta("data"),
                        spec=client.V1PersistentVolumeClaimSpec(
                            access_modes=["ReadWriteOnce"],
                            resources=client.V1VolumeResourceRequirements(
                                requests={"storage": "16Mi"}
                            ),
                        ),
                    )
                ],
            ),
        ),
    )
    pod = kube.wait_for(
        core.list_namespaced_pod,
        namespace,
        "store-0",
        kube.pod_ready,
        "store-0 Ready",
        READY_TIMEOUT,
    )
    claim = core.read_namespaced_persistent_volume_claim("data-store-0", namespace)
    assert claim.status.phase == "Bound", claim.status
    default_classes = [
        sc.metadata.name
        for sc in client.StorageV1Api(core.api_client).list_storage_class().items
        if (sc.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert claim.spec.storage_class_name in default_classes, (claim.spec, default_classes)

    token = uuid.uuid4().hex
    _exec(core, namespace, "store-0", f"echo {token} > /data/token && sync")
    core.delete_namespaced_pod("store-0", namespace)
    kube.wait_for(
        core.list_namespaced_pod,
        namespace,
        "store-0",
        lambda p: kube.pod_gone_or_replaced(pod.metadata.uid)(p) and kube.pod_ready(p),
        "a replacement store-0 Ready",
        READY_TIMEOUT,
    )
    assert _exec(core, namespace, "store-0", "cat /data/token").strip() == token


def test_network_policy_denies_and_allows(
    core: client.CoreV1Api,
    networking: client.NetworkingV1Api,
    namespace: str,
    web_image: WebImage,
    busybox_image: str,
) -> None:
    # The server on one node, its clients on another (when there are several): the policy
    # holds for traffic routed between nodes.
    nodes = _nodes(core)
    server_node, client_node = nodes[-1], nodes[0]
    server = _start_pod(
        core,
        namespace,
        client.V1Pod(
            metadata=_meta("np-server", app="np-server"),
            spec=client.V1PodSpec(
                termination_grace_period_seconds=5,
                containers=[_container(web_image.tag, web_image.command, web_image.port)],
                node_name=server_node,
                tolerations=ANY_NODE,
            ),
        ),
    )
    allowed = _start_pod(
        core, namespace, _pod("np-allowed", busybox_image, IDLE, client_node, role="allowed")
    )
    denied = _start_pod(
        core, namespace, _pod("np-denied", busybox_image, IDLE, client_node, role="denied")
    )
    # busybox nc, not wget: Debian's static busybox wget crashes in glibc's resolver.
    request = r"printf 'GET / HTTP/1.0\r\n\r\n'"
    fetch = f"{request} | nc -w 2 {server.status.pod_ip} {web_image.port} 2>&1 || echo FETCH-FAILED"

    # Without a policy both reach the server: a later failure is the policy's doing.
    for client_pod in (allowed, denied):
        assert web_image.marker in _exec(core, namespace, client_pod.metadata.name, fetch)

    networking.create_namespaced_network_policy(
        namespace,
        client.V1NetworkPolicy(
            metadata=_meta("np-server-ingress"),
            spec=client.V1NetworkPolicySpec(
                pod_selector=client.V1LabelSelector(match_labels={"app": "np-server"}),
                policy_types=["Ingress"],
                ingress=[
                    client.V1NetworkPolicyIngressRule(
                        _from=[
                            client.V1NetworkPolicyPeer(
                                pod_selector=client.V1LabelSelector(
                                    match_labels={"role": "allowed"}
                                )
                            )
                        ],
                        ports=[client.V1NetworkPolicyPort(port=web_image.port, protocol="TCP")],
                    )
                ],
            ),
        ),
    )
    denied_output = _until(
        lambda: _exec(core, namespace, denied.metadata.name, fetch),
        lambda output: web_image.marker not in output,
        POLICY_TIMEOUT,
    )
    assert "FETCH-FAILED" in denied_output, denied_output
    assert web_image.marker in _exec(core, namespace, allowed.metadata.name, fetch)


def _until(action: Callable[[], str], done: Callable[[str], bool], timeout: float) -> str:
    """Repeat action until done(result): policies are programmed asynchronously."""
    deadline = time.monotonic() + timeout
    result = action()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(1)
        result = action()
    assert done(result), f"condition not reached within {timeout}s; last result: {result!r}"
    return result
