"""Offline base images for the project's own images (python:*/postgres:* cannot be pulled).

Built from Debian rootfs images plus the build contexts in images/; docker's
layer cache makes a rebuild with unchanged inputs take a second.
"""

from __future__ import annotations

import argparse
import sys

from harness import paths, versions
from harness.build import docker, rootfs
from harness.host import engine
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


def tag_postgres(name: str) -> str:
    """The PostgreSQL image under `name` (a registry's, to push): what the aws overlay runs
    as REGISTRY/pg-gateway-postgres:TAG."""
    engine.ensure_engine()
    built = postgres()
    with step(f"tag {built} as {name}") as current:
        current.run(["docker", "tag", built, name])
    return name


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.build.baseimages [NAME]` (`nox -s postgres_image -- NAME`): build
    both base images and print their tags, or, given NAME, the PostgreSQL image tagged NAME."""
    parser = argparse.ArgumentParser(prog="python -m harness.build.baseimages")
    parser.add_argument("name", nargs="?", help="tag the PostgreSQL image so (e.g. to push it)")
    args = parser.parse_args(argv)

    def build() -> None:
        if args.name:
            print(tag_postgres(args.name))
            return
        engine.ensure_engine()
        for each in (python_base, postgres):
            print(each())

    return run_cli(build)


if __name__ == "__main__":
    sys.exit(main())
