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
    """Debian's PostgreSQL 15 with the official image's entrypoint contract, and Patroni
    (which the official postgres:15 lacks, so it is always this build). The wheels Patroni's
    lock pins are downloaded into the build context first."""
    context = paths.IMAGES_DIR / "postgres"
    with step("download Patroni's wheels") as current:
        current.run(
            [
                paths.REPO_ROOT / "scripts" / "download-wheels.sh",
                context / "patroni.lock",
                context / "wheelhouse",
                *("--no-deps", "--no-binary", "ydiff"),  # images/postgres/patroni.in: why
            ],
            env={"PYTHON": sys.executable},
        )
    return _build("postgres", rootfs.POSTGRES, versions.POSTGRES_IMAGE)


def _print_all() -> None:
    for build in (python_base, postgres):
        print(build())


if __name__ == "__main__":
    # `python -m harness.build.baseimages`: build both and print their tags.
    sys.exit(run_cli(_print_all))
