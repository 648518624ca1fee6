"""The images the gate runs, built without any registry where none answers.

The entry points below are all the cluster and the e2e tests call; the modules behind them
do the work (Go builds, Debian rootfs images, the component images, the node image).
Every result is a local image tag, cached by its inputs, so a warm call takes a second.
"""

from __future__ import annotations

from pathlib import Path

from harness import names, paths
from harness.build import app_image, baseimages, nodeimage, rootfs
from harness.manifests.render import render
from harness.steps import HarnessError, step


def node_image() -> str:
    """The kind node image: kindest/node where a registry answers, else assembled offline."""
    return nodeimage.ensure_node_image()


def node_image_tag() -> str:
    """The tag the offline node image has for the current inputs (whether built or not)."""
    return nodeimage.offline_tag()


def busybox_image() -> str:
    """A tiny busybox image: the privileged probe, kind's local-path helper, test pods."""
    return rootfs.busybox_image()


def postgres_image() -> str:
    """Debian's PostgreSQL 15 with the official image's contract, and Patroni."""
    return baseimages.postgres()


def gateway_image(tag: str, source: Path = paths.REPO_ROOT) -> str:
    """pg-gateway/gateway:<tag> from the Dockerfile of `source` (this repository, or a
    patched copy of it); each build its own image ID."""
    return app_image.build_gateway(tag, source)


def overlay_images(overlay: Path) -> dict[str, str]:
    """Container name -> image, as the overlay renders them."""
    found = {}
    for resource in render(overlay):
        pod = resource.body.get("spec", {}).get("template", {}).get("spec", {})
        found.update({c["name"]: c["image"] for c in pod.get("containers", [])})
    return found


def kind_overlay_images() -> tuple[str, ...]:
    """The images `scripts/deploy.sh kind` runs, made under the names the kind overlay gives
    them: the gateway built from this repository, PostgreSQL as `postgres_image()` makes it
    (the official image where a registry answers, tagged so)."""
    wanted = overlay_images(paths.KIND_OVERLAY)
    gateway, postgres = wanted[names.GATEWAY_CONTAINER], wanted[names.POSTGRES_CONTAINER]
    repository, _, tag = gateway.rpartition(":")
    if repository != app_image.GATEWAY_REPOSITORY:
        raise HarnessError(
            f"the kind overlay runs {gateway}, not a {app_image.GATEWAY_REPOSITORY} image"
        )
    built = postgres_image()
    if built != postgres:
        with step(f"tag {built} as {postgres}") as current:
            current.run(["docker", "tag", built, postgres])
    return gateway_image(tag), postgres
