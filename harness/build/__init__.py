"""The images the gate runs, built without any registry where none answers.

The entry points below are all the cluster and the e2e tests call; the modules behind them
do the work (Go builds, Debian rootfs images, the component images, the node image).
Every result is a local image tag, cached by its inputs, so a warm call takes a second.
"""

from __future__ import annotations

from pathlib import Path

from harness import paths
from harness.build import app_image, baseimages, nodeimage, rootfs


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
    """postgres:15 where a registry answers, else Debian's PostgreSQL 15 with its contract."""
    return baseimages.postgres()


def gateway_image(tag: str, source: Path = paths.REPO_ROOT) -> str:
    """pg-gateway/gateway:<tag> from the Dockerfile of `source` (this repository, or a
    patched copy of it); each build its own image ID."""
    return app_image.build_gateway(tag, source)
