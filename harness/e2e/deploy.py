"""Deploy the manifests into a fresh namespace, or over what a namespace runs (an upgrade,
a rollback), and wait until they serve.

The Secret is made here, per deployment, with random values: nothing secret is in git. A
change the API server refuses to make in place (an immutable field) fails with the object,
the field and the way out, not only kubectl's exit status.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from harness import kube, names
from harness.cluster import GateCluster
from harness.manifests.render import display_path, render
from harness.steps import HarnessError, Step, StepFailed, step

ROLLOUT_TIMEOUT_S = 240
NAMESPACE_GONE_TIMEOUT_S = 180


@dataclass(frozen=True)
class Credentials:
    """The per-deployment secrets; tokens are handed to the tests, never logged. No field is
    in the repr: pytest prints a failed check's arguments (the `deployment` holding these)
    and the reprs in an assertion's explanation."""

    postgres_password: str = field(repr=False)
    gateway_password: str = field(repr=False)
    reader_password: str = field(repr=False)
    # Patroni's streaming-replication login (the replicated cluster, components/postgres-ha).
    replication_password: str = field(repr=False)
    admin_token: str = field(repr=False)
    reader_token: str = field(repr=False)

    @classmethod
    def random(cls) -> Credentials:
        return cls(*(secrets.token_urlsafe(24) for _ in fields(cls)))

    @property
    def api_tokens(self) -> str:
        admin = self.admin_token + names.ADMIN_TOKEN_OPTIONS
        return f"{admin},{self.reader_token}{names.READER_TOKEN_OPTIONS}"

    def named(self) -> dict[str, str]:
        """Every secret by name, API_TOKENS too: what no output of a run may hold."""
        values = {each.name: getattr(self, each.name) for each in fields(self)}
        return {**values, names.API_TOKENS_KEY: self.api_tokens}


def set_image(documents: list[dict[str, Any]], container: str, image: str) -> None:
    """Point every container of that name at `image` (the tag the run just built)."""
    for document in documents:
        pod_spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for spec in pod_spec.get("containers", []):
            if spec["name"] == container:
                spec["image"] = image


def create_namespace(core: client.CoreV1Api, namespace: str) -> None:
    labels = {names.PART_OF_LABEL: names.APP, names.E2E_LABEL: "true"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels))
    )


def delete_previous_namespaces(core: client.CoreV1Api) -> None:
    """An earlier kept run holds the NodePort: remove it and wait until it is gone."""
    selector = f"{names.E2E_LABEL}=true"
    for namespace in core.list_namespace(label_selector=selector).items:
        if namespace.metadata.deletion_timestamp is None:
            core.delete_namespace(namespace.metadata.name)
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT_S
    while core.list_namespace(label_selector=selector).items:
        if time.monotonic() > deadline:
            raise HarnessError(
                "namespaces of an earlier e2e run did not go away within "
                f"{NAMESPACE_GONE_TIMEOUT_S} s"
            )
        time.sleep(1)


def create_secret(core: client.CoreV1Api, namespace: str, credentials: Credentials) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=names.SECRET),
            string_data={
                "postgres-password": credentials.postgres_password,
                "gateway-password": credentials.gateway_password,
                "reader-password": credentials.reader_password,
                "replication-password": credentials.replication_password,
                names.API_TOKENS_KEY: credentials.api_tokens,
            },
        ),
    )


# How the API server words a change it will not make to an existing object.
_REFUSED = re.compile(r'The (\w+) "([^"]+)" is invalid: (\S+): (.*)')
_IN_PLACE = ("field is immutable", "Forbidden: updates to", "may not change once set")
_WAY_OUT = {
    "StatefulSet": (
        "delete the StatefulSet but not its pods and volumes (`kubectl -n {namespace} delete "
        "statefulset {name} --cascade=orphan`) and apply again: the new one adopts the pod and "
        "its claim (a changed volumeClaimTemplates reaches new claims only; grow an existing "
        "volume by patching its PersistentVolumeClaim)"
    ),
    "Deployment": (
        "delete the Deployment (`kubectl -n {namespace} delete deployment {name}`: its pods go, "
        "and with them the service until the new ones are Ready) and apply again, or keep the "
        "old field"
    ),
}
_DEFAULT_WAY_OUT = "delete it (`kubectl -n {namespace} delete {kind} {name}`) and apply again"


def refused_in_place(kubectl_output: str, namespace: str) -> list[str]:
    """Each object whose change the API server refused to make in place: kind/name, the
    field, its words, and the way out."""
    found = []
    for line in kubectl_output.splitlines():
        match = _REFUSED.search(line)
        if match is None or not any(words in line for words in _IN_PLACE):
            continue
        kind, name, field, words = match.groups()
        way_out = _WAY_OUT.get(kind, _DEFAULT_WAY_OUT).format(
            namespace=namespace, kind=kind.lower(), name=name
        )
        found.append(f"{kind}/{name}: {field} cannot change in place ({words}); {way_out}")
    return found


def apply(
    current: Step, cluster: GateCluster, namespace: str, documents: list[dict[str, Any]]
) -> None:
    """`kubectl apply` the objects; what was applied is kept beside the step's log."""
    manifest = current.log_path.with_suffix(".yaml")
    manifest.write_text(yaml.safe_dump_all(documents))
    try:
        cluster.kubectl("-n", namespace, "apply", "-f", str(manifest))
    except StepFailed as failed:
        refused = refused_in_place(failed.log_path.read_text(errors="replace"), namespace)
        if not refused:
            raise
        raise HarnessError(
            "kubectl apply was refused: " + "; ".join(refused) + f"\n  full log: {failed.log_path}"
        ) from None


def wait_serving(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    kube.wait_statefulset_ready(apps, namespace, names.POSTGRES, ROLLOUT_TIMEOUT_S)
    wait_rolled_out(apps, namespace)


def wait_rolled_out(apps: client.AppsV1Api, namespace: str) -> Any:
    return kube.wait_rolled_out(apps, namespace, names.GATEWAY, ROLLOUT_TIMEOUT_S)


def rendering(target: Path, images: dict[str, str]) -> list[dict[str, Any]]:
    """The kustomization `target` rendered, its containers running `images` (by name)."""
    documents = [res.body for res in render(target)]
    for container, image in images.items():
        set_image(documents, container, image)
    return documents


def deploy(
    api: client.ApiClient,
    cluster: GateCluster,
    namespace: str,
    target: Path,
    images: dict[str, str],
    credentials: Credentials,
    documents: list[dict[str, Any]] | None = None,
) -> None:
    """Namespace, Secret, the kustomization `target` (the `kind` overlay, or a broken copy
    of it in the gate's self-test) with this run's images, or `documents` rendered from it
    already; wait until it serves."""
    core = client.CoreV1Api(api)
    with step(f"deploy {display_path(target)} to {namespace}") as current:
        create_namespace(core, namespace)
        create_secret(core, namespace, credentials)
        apply(current, cluster, namespace, documents or rendering(target, images))
        wait_serving(api, namespace)


def apply_over(
    api: client.ApiClient,
    cluster: GateCluster,
    namespace: str,
    release: str,
    documents: list[dict[str, Any]],
) -> None:
    """`documents` (the release named `release`) applied over what `namespace` runs, as an
    upgrade or a rollback applies them; wait until it serves."""
    with step(f"apply {release} over {namespace}") as current:
        apply(current, cluster, namespace, documents)
        wait_serving(api, namespace)
