"""The Kubernetes API groups the checks use, as session fixtures over an `api` fixture.

Both plugins load it (`pytest_plugins`) and give it their `api`: the e2e plugin's from the
kind cluster it brings up, the smoke plugin's from --kubeconfig.
"""

from __future__ import annotations

import pytest
from kubernetes import client


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture(scope="session")
def networking(api: client.ApiClient) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(api)
