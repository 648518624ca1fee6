"""What the smoke checks talk to, found from the deployment itself.

The URL is the one a client outside the cluster uses: a LoadBalancer's address (AWS), or a
NodePort on 127.0.0.1, where kind publishes it. The token is the Secret's first
`api-tokens` entry (the admin one); it is handed to requests and never printed.
"""

from __future__ import annotations

import base64
import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from kubernetes import client
from requests import Response

from harness import gateway, kube, names
from harness.manifests.render import Resource
from harness.steps import HarnessError

READY_POLL_S = 2.0
# What shows the Service leads to a serving gateway: a GET that needs no token.
READY_PATH = "/openapi.json"


class Admin(enum.Enum):
    """The deployment's admin token, looked up as a request is sent, never passed around."""

    TOKEN = "admin"  # noqa: S105 - a name, not a value


ADMIN = Admin.TOKEN


@contextmanager
def unanswered_named(request: str) -> Iterator[None]:
    """A request that got no answer becomes a HarnessError naming it, without its context."""
    try:
        yield
    except requests.RequestException as exc:
        raise HarnessError(f"{request}: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Gateway:
    """The deployed gateway at `url`, with its admin token (kept out of every repr).

    A request that gets no answer raises a HarnessError naming it, from None: the frames of
    the failed request hold its Authorization header, and a traceback shows their arguments.
    """

    url: str
    admin_token: str = field(repr=False)

    def query(self, sql: str, token: str | Admin | None = ADMIN, **fields: Any) -> Response:
        """POST /query with the admin token, another one, or (None) none."""
        value = self.admin_token if token is ADMIN else token
        with unanswered_named(f"POST {self.url}/query"):
            return gateway.post_query(self.url, sql, value, **fields)

    def get(self, path: str) -> Response:
        with unanswered_named(f"GET {self.url}{path}"):
            return requests.get(f"{self.url}{path}", timeout=gateway.REQUEST_TIMEOUT_S)

    def wait_ready(self, timeout_s: float) -> None:
        """Until the Service answers (a LoadBalancer's name may take a while to resolve);
        the pods' own readiness is on their operations port, which the Service does not
        lead to."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                last: object = self.get(READY_PATH).status_code
            except HarnessError as exc:
                last = exc
            if last == 200:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"no 200 from {READY_PATH} within {timeout_s:.0f} s: {last}")
            time.sleep(READY_POLL_S)


def first_token(api_tokens: str) -> str:
    """The admin token: the token of API_TOKENS's first `token[:role][:option...]` entry."""
    entries = [entry.strip() for entry in api_tokens.split(",") if entry.strip()]
    if not entries:
        raise HarnessError(
            f"Secret {names.SECRET} has an empty {names.API_TOKENS_KEY}: the gateway runs "
            "without authentication"
        )
    return entries[0].partition(":")[0]


def admin_token(core: client.CoreV1Api, namespace: str) -> str:
    secret = core.read_namespaced_secret(names.SECRET, namespace)
    encoded = (secret.data or {}).get(names.API_TOKENS_KEY)
    if not encoded:
        raise HarnessError(f"Secret {names.SECRET} has no key {names.API_TOKENS_KEY}")
    return first_token(base64.b64decode(encoded).decode())


def has_address(service: Any) -> bool:
    """False only for a LoadBalancer still waiting for its address."""
    return service.spec.type != "LoadBalancer" or bool(service.status.load_balancer.ingress)


def service_url(service: Any) -> str:
    """Where a client outside the cluster reaches the gateway's Service."""
    spec = service.spec
    port = next((port for port in spec.ports or [] if port.port == names.GATEWAY_PORT), None)
    if port is None:
        raise HarnessError(f"Service {names.GATEWAY} has no port {names.GATEWAY_PORT}")
    if spec.type == "LoadBalancer" and service.status.load_balancer.ingress:
        address = service.status.load_balancer.ingress[0]
        return f"http://{address.hostname or address.ip}:{port.port}"
    if spec.type == "NodePort":
        return f"http://127.0.0.1:{port.node_port}"
    raise HarnessError(
        f"Service {names.GATEWAY} is of type {spec.type} without an external address: "
        "give the gateway's URL with --url"
    )


def find_url(core: client.CoreV1Api, namespace: str, timeout_s: float) -> str:
    """The Service's URL, once a LoadBalancer has its address (AWS provisions it first)."""
    service = kube.wait_for(
        core.list_namespaced_service,
        namespace,
        names.GATEWAY,
        has_address,
        f"service/{names.GATEWAY} has an address",
        timeout_s,
    )
    return service_url(service)


def live_resources(api: client.ApiClient, namespace: str) -> list[Resource]:
    """The namespace's workloads, PodDisruptionBudgets and NetworkPolicies as the manifest
    policy reads rendered objects (the API's camelCase JSON)."""
    apps, policy = client.AppsV1Api(api), client.PolicyV1Api(api)
    networking = client.NetworkingV1Api(api)
    listed = [
        ("Deployment", apps.list_namespaced_deployment),
        ("StatefulSet", apps.list_namespaced_stateful_set),
        ("PodDisruptionBudget", policy.list_namespaced_pod_disruption_budget),
        ("NetworkPolicy", networking.list_namespaced_network_policy),
    ]
    resources = []
    for kind, list_call in listed:
        for item in list_call(namespace).items:
            body = {"kind": kind, **api.sanitize_for_serialization(item)}
            resources.append(Resource(body, f"namespace {namespace}"))
    return resources
