"""The gateway's image from the project's Dockerfile, with or without a registry.

The Python base is the official slim image where it is present or can be pulled, and
otherwise the offline Debian bookworm + python3 image. scripts/build-image.sh downloads the
wheels with pip (PyPI is reachable where registries are not), so `docker build` itself needs
no network and installs exactly the hashes in requirements.lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import paths, versions
from harness.build import baseimages, docker
from harness.steps import step

GATEWAY_REPOSITORY = "pg-gateway/gateway"


def python_base() -> str:
    """The official image when this machine has it or reaches a registry, else offline."""
    official = versions.OFFICIAL_PYTHON_IMAGE
    return official if docker.available(official) else baseimages.python_base()


def build_gateway(tag: str, source: Path = paths.REPO_ROOT) -> str:
    """Build pg-gateway/gateway:<tag> with the scripts/build-image.sh of `source`. Each build
    is labelled, so each has its own image ID (a rollout to a new tag then really ships a new
    image)."""
    image = f"{GATEWAY_REPOSITORY}:{tag}"
    base = python_base()
    with step(f"build gateway image {image} on {base}") as current:
        current.run(
            [source / "scripts" / "build-image.sh", image],
            env={"BASE_IMAGE": base, "BUILD_LABEL": tag, "PYTHON": sys.executable},
        )
    return image
