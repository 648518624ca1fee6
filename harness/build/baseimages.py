"""Offline base images for the project's own images (python:*/postgres:* cannot be pulled).

Built from Debian rootfs images plus the build contexts in images/; docker's
layer cache makes a rebuild with unchanged inputs take a second.
"""

from __future__ import annotations

import sys

from harness import paths, versions
from harness.build import docker, rootfs
from harness.steps import run_cli, step


def _build(name: str, base: rootfs.Rootfs, tag: str) -> str:
    base_tag = rootfs.ensure(base)
    with step(f"build {tag}") as current:
        docker.build(current, paths.IMAGES_DIR / name, tag, {"BASE_IMAGE": base_tag})
    return tag


def python_base() -> str:
    """Debian bookworm with python3 and venv: the gateway Dockerfile's BASE_IMAGE."""
    return _build("python-base", rootfs.PYTHON, versions.PYTHON_BASE_IMAGE)


def postgres() -> str:
    """The official postgres:15 where a registry answers, else the offline build of
    Debian's PostgreSQL 15 with the same entrypoint contract."""
    if docker.available(versions.OFFICIAL_POSTGRES_IMAGE):
        return versions.OFFICIAL_POSTGRES_IMAGE
    return _build("postgres", rootfs.POSTGRES, versions.POSTGRES_IMAGE)


def _print_all() -> None:
    for build in (python_base, postgres):
        print(build())


if __name__ == "__main__":
    # `python -m harness.build.baseimages`: build both and print their tags.
    sys.exit(run_cli(_print_all))
