"""The gateway's image from the project's Dockerfile, with or without a registry.

The Python base is the official slim image where it is present or can be pulled, and
otherwise the offline Debian bookworm + python3 image. Wheels are downloaded by the host's
pip into ./wheelhouse (PyPI is reachable where registries are not), so `docker build`
itself needs no network and installs exactly the hashes in requirements.lock.
"""

from __future__ import annotations

import sys

from harness import baseimages, docker, paths
from harness.steps import step

OFFICIAL_PYTHON = "python:3.11-slim-bookworm"  # the Dockerfile's default BASE_IMAGE
GATEWAY_REPOSITORY = "pg-gateway/gateway"
WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


def python_base() -> str:
    """The official image when this machine has it or reaches a registry, else offline."""
    return OFFICIAL_PYTHON if docker.available(OFFICIAL_PYTHON) else baseimages.python_base()


def postgres_image() -> str:
    return baseimages.postgres()


def build_gateway(tag: str) -> str:
    """Build pg-gateway/gateway:<tag>; each build is labelled, so each has its own image ID
    (a rollout to a new tag then really ships a different image)."""
    image = f"{GATEWAY_REPOSITORY}:{tag}"
    base = python_base()
    with step(f"build gateway image {image} on {base}") as current:
        wheelhouse = paths.REPO_ROOT / "wheelhouse"
        platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
        current.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                *platforms,
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--require-hashes",
                "-r",
                paths.REPO_ROOT / "requirements.lock",
                "-d",
                wheelhouse,
            ]
        )
        current.run(
            [
                "docker",
                "build",
                "--pull=false",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--label",
                f"pg-gateway.build={tag}",
                "-t",
                image,
                paths.REPO_ROOT,
            ],
            env={"DOCKER_BUILDKIT": "0"},
        )
    return image
