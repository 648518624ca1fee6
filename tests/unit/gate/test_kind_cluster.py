"""pytest-kind's cluster object as the harness makes it: the commands it runs, what it keeps.

kind is a real executable here, a shell script that records its arguments and answers
`get clusters` from a file, so every command really runs through the harness's steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from pytest_kind import KindCluster

from harness import names
from harness.cluster.kindcluster import GateCluster, containerd_reference, kind_config, marker
from harness.cluster.shape import DEFAULT_WORKERS, WORKERS_ENV, node_names, worker_count
from harness.steps import HarnessError

FAKE_KIND = """#!/bin/sh
echo "$*" >> "{calls}"
if [ "$1" = get ]; then cat "{clusters}"; fi
"""


@pytest.fixture
def kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "kind"
    script.write_text(FAKE_KIND.format(calls=tmp_path / "calls", clusters=tmp_path / "clusters"))
    script.chmod(0o755)
    (tmp_path / "clusters").write_text("someone-else\n")
    return script


def calls(kind: Path) -> list[str]:
    return (kind.parent / "calls").read_text().splitlines()


def test_it_is_pytest_kinds_cluster_object_and_leaves_no_download_directory(kind: Path) -> None:
    cluster = GateCluster(str(kind), image="node:test")
    assert isinstance(cluster, KindCluster)
    assert (cluster.name, cluster.kind_path, cluster.image) == (names.CLUSTER, kind, "node:test")
    assert not (kind.parent / ".pytest-kind").exists()


def test_a_missing_cluster_is_created_with_the_node_ports_and_marked(kind: Path) -> None:
    cluster = GateCluster(str(kind), image="node:test")
    cluster.create()
    create = calls(kind)[-1].split()
    assert create[:4] == ["create", "cluster", "--name", names.CLUSTER]
    assert create[create.index("--image") + 1] == "node:test"
    assert create[create.index("--kubeconfig") + 1] == str(cluster.kubeconfig_path)
    config = Path(create[create.index("--config") + 1]).read_text()
    for port in names.PUBLISHED_PORTS:
        assert f'hostPort: {port}\n    listenAddress: "127.0.0.1"' in config
    assert marker().read_text() == "node:test\n"


def test_an_existing_cluster_is_reused_and_its_kubeconfig_exported(kind: Path) -> None:
    (kind.parent / "clusters").write_text(f"{names.CLUSTER}\n")
    GateCluster(str(kind)).create()
    assert calls(kind)[-1].startswith(f"export kubeconfig --name {names.CLUSTER} --kubeconfig ")
    assert not marker().exists()


def test_a_cluster_this_tool_did_not_create_is_not_deleted(kind: Path) -> None:
    (kind.parent / "clusters").write_text(f"{names.CLUSTER}\n")
    with pytest.raises(HarnessError, match="not created by this tool"):
        GateCluster(str(kind)).delete()
    assert not any(call.startswith("delete") for call in calls(kind))


def test_a_cluster_this_tool_created_is_deleted_with_its_mark_and_kubeconfig(kind: Path) -> None:
    cluster = GateCluster(str(kind))
    cluster.create()
    cluster.kubeconfig_path.write_text("kubeconfig")
    (kind.parent / "clusters").write_text(f"{names.CLUSTER}\n")
    cluster.delete()
    assert calls(kind)[-1].startswith(f"delete cluster --name {names.CLUSTER}")
    assert not marker().exists()
    assert not cluster.kubeconfig_path.exists()


IMAGE_ID = "sha256:" + "1" * 64
# `docker image inspect` answers IMAGE_ID; `docker exec NODE ctr ... images ls` prints the
# file named after the node (nothing when there is none).
FAKE_DOCKER = """#!/bin/sh
if [ "$1" = image ]; then echo {image_id}; fi
if [ "$1" = exec ]; then cat "{listings}/$2" 2>/dev/null; fi
exit 0
"""
LISTING_HEADER = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker on PATH as FAKE_DOCKER; returns the directory of the nodes' listings."""
    listings = tmp_path / "listings"
    listings.mkdir()
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir(exist_ok=True)
    docker.write_text(FAKE_DOCKER.format(image_id=IMAGE_ID, listings=listings))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}{os.pathsep}{os.environ['PATH']}")
    return listings


def test_load_and_kubectl_run_as_logged_steps(
    kind: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch)
    (kind.parent / "clusters").write_text("pg-gateway-control-plane\n")  # `kind get nodes`
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.write_text('#!/bin/sh\necho "KUBECONFIG=$KUBECONFIG $*"\n')
    kubectl.chmod(0o755)
    cluster = GateCluster(str(kind))
    cluster.load_docker_image("pg-gateway/gateway:test")
    assert calls(kind)[-1] == (
        f"load docker-image --name {names.CLUSTER} --nodes pg-gateway-control-plane "
        "pg-gateway/gateway:test"
    )
    output = cluster.kubectl("get", "nodes")
    assert output == f"KUBECONFIG={cluster.kubeconfig_path} get nodes\n"
    logs = "".join(p.read_text() for p in (tmp_path / "artifacts" / "logs").glob("*.log"))
    assert "kubectl get nodes" in logs
    assert "load docker-image" in logs


def test_port_forward_is_refused_for_the_node_port(kind: Path) -> None:
    with pytest.raises(HarnessError, match="NodePort"):
        GateCluster(str(kind)).port_forward("service/pg-gateway", 5000)


@pytest.mark.parametrize(
    ("docker_image", "reference"),
    [
        ("pg-gateway/gateway:e2e-1", "docker.io/pg-gateway/gateway:e2e-1"),
        ("busybox:1", "docker.io/library/busybox:1"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("localhost/x:1", "localhost/x:1"),
    ],
)
def test_containerd_names_an_image_as_kind_load_stores_it(
    docker_image: str, reference: str
) -> None:
    assert containerd_reference(docker_image) == reference


def test_the_config_has_one_control_plane_publishing_the_ports_and_the_workers() -> None:
    config = yaml.safe_load(kind_config(2))
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    control_plane, *workers = config["nodes"]
    assert control_plane["extraPortMappings"] == [
        {"containerPort": port, "hostPort": port, "listenAddress": "127.0.0.1", "protocol": "TCP"}
        for port in names.PUBLISHED_PORTS
    ]
    assert all("extraPortMappings" not in worker for worker in workers)
    assert [node["role"] for node in yaml.safe_load(kind_config())["nodes"]] == ["control-plane"]


def test_a_cluster_is_created_with_the_workers_asked_for(kind: Path) -> None:
    GateCluster(str(kind), workers=2).create()
    create = calls(kind)[-1].split()
    config = yaml.safe_load(Path(create[create.index("--config") + 1]).read_text())
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker", "worker"]


@pytest.mark.parametrize(
    ("workers", "nodes"),
    [
        (0, ["control-plane"]),
        (2, ["control-plane", "worker", "worker2"]),
        (3, ["control-plane", "worker", "worker2", "worker3"]),
    ],
)
def test_node_names_are_kinds(workers: int, nodes: list[str]) -> None:
    assert node_names(workers) == [f"{names.CLUSTER}-{node}" for node in nodes]


def test_the_worker_count_defaults_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert worker_count() == DEFAULT_WORKERS == 2
    monkeypatch.setenv(WORKERS_ENV, " 0 ")
    assert worker_count() == 0
    assert worker_count("3") == 3
    for wrong in ("-1", "two", "4", "1.5"):
        with pytest.raises(HarnessError, match=WORKERS_ENV):
            worker_count(wrong)


def test_images_are_removed_from_every_node(kind: Path, tmp_path: Path) -> None:
    nodes = node_names(2)
    (kind.parent / "clusters").write_text("\n".join(nodes) + "\n")  # `kind get nodes` too
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path / "docker-calls"}"\n')
    docker.chmod(0o755)
    path = f"{docker.parent}{os.pathsep}{os.environ['PATH']}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", path)
        GateCluster(str(kind)).remove_docker_image("pg-gateway/gateway:test")
    removed = (tmp_path / "docker-calls").read_text().splitlines()
    reference = "docker.io/pg-gateway/gateway:test"
    assert removed == [
        *(f"exec {node} ctr -n k8s.io images rm {reference}" for node in nodes),
        "rmi pg-gateway/gateway:test",
    ]


def test_an_image_is_loaded_only_onto_the_nodes_that_lack_it(
    kind: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kind's own check asks crictl, which the node image lacks: each node's containerd is
    asked whether the name and the CRI plugin's reference by ID name the same manifest."""
    listings = fake_docker(tmp_path, monkeypatch)
    nodes = node_names(2)
    (kind.parent / "clusters").write_text("\n".join(nodes) + "\n")
    reference = containerd_reference("pg-gateway/postgres:15-bookworm")
    same = f"{reference} manifest sha256:aa 1MiB\n{IMAGE_ID} manifest sha256:aa 1MiB\n"
    other = f"{reference} manifest sha256:bb 1MiB\n{IMAGE_ID} manifest sha256:aa 1MiB\n"
    (listings / nodes[0]).write_text(LISTING_HEADER + same)
    (listings / nodes[1]).write_text(LISTING_HEADER + other)  # an older build under that name
    (listings / nodes[2]).write_text(LISTING_HEADER)  # none
    cluster = GateCluster(str(kind))
    cluster.load_docker_image("pg-gateway/postgres:15-bookworm")
    loads = [call for call in calls(kind) if call.startswith("load")]
    assert loads == [
        f"load docker-image --name {names.CLUSTER} --nodes {nodes[1]},{nodes[2]} "
        "pg-gateway/postgres:15-bookworm"
    ]
    for node in nodes[1:]:
        (listings / node).write_text(LISTING_HEADER + same)
    cluster.load_docker_image("pg-gateway/postgres:15-bookworm")
    assert [call for call in calls(kind) if call.startswith("load")] == loads  # none more
