"""Fixtures for end-to-end tests on the real kind cluster the harness manages.

The cluster fixture brings the cluster up through the harness (reusing it when
it exists) and fails the run with the harness's message when something is
missing: a gate that silently skips would pass without testing anything.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client

from harness import build, cluster, kube
from harness.build import docker
from harness.steps import HarnessError, probe, step

T = TypeVar("T")


@dataclass(frozen=True)
class WebImage:
    """A locally built HTTP server image (in no registry) and what it serves."""

    tag: str
    marker: str
    port: int = 8080

    @property
    def command(self) -> list[str]:
        return ["httpd", "-f", "-p", str(self.port), "-h", "/www"]


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    try:
        return cluster.ensure_cluster()
    except HarnessError as exc:
        pytest.fail(f"the kind cluster could not be brought up: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def api(kubeconfig: Path) -> client.ApiClient:
    return kube.api_client(str(kubeconfig))


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture(scope="session")
def networking(api: client.ApiClient) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(api)


@pytest.fixture(scope="session")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per run, deleted (with everything in it) afterwards."""
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


@pytest.fixture(scope="session")
def busybox_image(kubeconfig: Path) -> str:
    """The offline busybox image, loaded into the node for test pods."""
    image = run_harness(build.busybox_image)
    run_harness(cluster.load_image, image)
    return image


@pytest.fixture(scope="session")
def web_image(busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebImage]:
    """Build the web image from a generated context and load it with `kind load`."""
    marker = f"served-by-e2e-{uuid.uuid4().hex[:8]}"
    image = WebImage(tag=f"pg-gateway/e2e-web:{marker}", marker=marker)
    context = tmp_path_factory.mktemp("web-image")
    (context / "index.html").write_text(marker + "\n")
    (context / "Dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY index.html /www/index.html\nCMD {json.dumps(image.command)}\n"
    )
    run_harness(_build_image, context, image.tag)
    run_harness(cluster.load_image, image.tag)
    yield image
    probe(["docker", "rmi", image.tag])


def _build_image(context: Path, tag: str) -> None:
    with step(f"build {tag}") as current:
        docker.build(current, context, tag)


def run_harness(function: Callable[..., T], *args: object) -> T:
    """Run a harness step; its failure (step name, log path) fails the test, not errors it."""
    try:
        return function(*args)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
