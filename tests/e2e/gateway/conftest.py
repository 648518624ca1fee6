"""The gateway deployed on the kind cluster, in a fresh namespace per run.

Session order: cluster up (reused when warm) -> images built and loaded -> namespace,
Secret, manifests -> wait until serving. On any test failure the diagnostics are saved
under artifacts/e2e/<namespace>/ and the failure report names that directory.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from harness import build, cluster, deploy, diagnostics, names, paths
from harness.deploy import Credentials
from tests.e2e.conftest import run_harness

BASE_URL = f"http://127.0.0.1:{names.NODE_PORT}"
NAMESPACE_GONE_TIMEOUT_S = 180


@dataclass
class Deployment:
    """What the tests need to talk to and about the deployed gateway."""

    namespace: str
    kubeconfig: Path
    api: client.ApiClient
    credentials: Credentials
    images: dict[str, str]

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def query(self, sql: str, token: str | None = "admin", **fields: Any) -> requests.Response:
        """POST /query through the NodePort on 127.0.0.1, as a client outside would."""
        headers = {}
        if token:
            value = self.credentials.admin_token if token == "admin" else token
            headers["Authorization"] = f"Bearer {value}"
        return requests.post(
            f"{BASE_URL}/query", json={"query": sql, **fields}, headers=headers, timeout=30
        )

    def gateway_pods(self) -> list[Any]:
        selector = "app.kubernetes.io/name=pg-gateway"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-namespace",
        action="store_true",
        help="leave the e2e namespace in place after the run (deleted at the next run)",
    )


def _delete_previous_namespaces(core: client.CoreV1Api) -> None:
    """An earlier kept run holds NodePort 31234: remove it and wait until it is gone."""
    old = core.list_namespace(label_selector="pg-gateway/e2e=true").items
    for namespace in old:
        if namespace.metadata.deletion_timestamp is None:
            core.delete_namespace(namespace.metadata.name)
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT_S
    while core.list_namespace(label_selector="pg-gateway/e2e=true").items:
        if time.monotonic() > deadline:
            pytest.fail("namespaces of an earlier e2e run did not go away within 180 s")
        time.sleep(1)


@pytest.fixture(scope="session")
def gateway_images() -> dict[str, str]:
    """Two builds of the gateway (distinct image IDs) for a rollout to a new tag."""
    first = run_harness(build.gateway_image, f"e2e-{secrets.token_hex(3)}")
    second = run_harness(build.gateway_image, f"e2e-{secrets.token_hex(3)}")
    return {"first": first, "second": second, "postgres": run_harness(build.postgres_image)}


@pytest.fixture(scope="session")
def deployment(
    request: pytest.FixtureRequest,
    kubeconfig: Path,
    api: client.ApiClient,
    core: client.CoreV1Api,
    gateway_images: dict[str, str],
) -> Iterator[Deployment]:
    for image in gateway_images.values():
        run_harness(cluster.load_image, image)
    _delete_previous_namespaces(core)
    namespace = f"pgw-e2e-{secrets.token_hex(4)}"
    credentials = Credentials.random()
    deployed = Deployment(namespace, kubeconfig, api, credentials, gateway_images)
    request.session.stash[DEPLOYMENT_KEY] = deployed
    images = {"gateway": gateway_images["first"], "postgres": gateway_images["postgres"]}
    run_harness(deploy.deploy, api, kubeconfig, namespace, images, credentials)
    yield deployed
    if not request.config.getoption("--keep-namespace") and not os.environ.get("PG_GATEWAY_KEEP"):
        core.delete_namespace(namespace)


DEPLOYMENT_KEY = pytest.StashKey[Deployment]()
DIAGNOSED_KEY = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    session = item.session
    deployed = session.stash.get(DEPLOYMENT_KEY, None)
    if report.failed and deployed is not None:
        directory = session.stash.get(DIAGNOSED_KEY, None)
        if directory is None:
            directory = paths.REPO_ROOT / "artifacts" / "e2e" / deployed.namespace
            diagnostics.collect(deployed.namespace, deployed.kubeconfig, directory)
            session.stash[DIAGNOSED_KEY] = directory
        report.sections.append(("diagnostics", f"saved under {directory}"))
    return report
