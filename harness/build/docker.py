"""Thin helpers over the docker CLI for building images without a registry."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.steps import Step, probe

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# On every image the harness makes, so it can prune its own leftovers and nobody else's.
BUILT_BY_LABEL = "io.pg-gateway.built-by=harness"


def image_exists(tag: str) -> bool:
    return probe(["docker", "image", "inspect", "--format", "{{.Id}}", tag]).returncode == 0


def available(image: str, *, pull_timeout: float = 30.0) -> bool:
    """True if the image is local or a registry hands it over within the timeout.

    Offline the pull fails at once (or at the timeout), so callers fall back
    to building; on a connected machine the public image is simply used.
    """
    if image_exists(image):
        return True
    return probe(["docker", "pull", image], timeout=pull_timeout).returncode == 0


def import_tar(
    step: Step,
    tar_path: Path,
    tag: str,
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> None:
    """`docker import` a rootfs tarball as a one-layer image with metadata.

    An imported image has no config at all, so PATH is always set: kubelet
    and containerd run commands by name through it.
    """
    changes = [f"ENV PATH={DEFAULT_PATH}", f"LABEL {BUILT_BY_LABEL}"]
    changes += [f"ENV {key}={value}" for key, value in (env or {}).items()]
    if entrypoint:
        changes.append("ENTRYPOINT " + _json_list(entrypoint))
    if cmd:
        changes.append("CMD " + _json_list(cmd))
    if user:
        changes.append(f"USER {user}")
    args: list[str] = ["docker", "import"]
    for change in changes:
        args += ["--change", change]
    step.run([*args, tar_path, tag])


def _json_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def build(step: Step, context: Path, tag: str, build_args: Mapping[str, str] | None = None) -> None:
    """Classic `docker build`: a local FROM image is used as is, never pulled."""
    args: list[str] = ["docker", "build", "--pull=false", "--label", BUILT_BY_LABEL, "-t", tag]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    step.run([*args, context], env={"DOCKER_BUILDKIT": "0"})


def write_files_tar(
    tar_path: Path, files: Mapping[str, Path | bytes], *, mode: int = 0o755
) -> None:
    """A rootfs tarball holding just the given files (path in image -> source)."""
    with tarfile.open(tar_path, "w") as tar:
        for name, source in files.items():
            data = source.read_bytes() if isinstance(source, Path) else source
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        for directory in ("tmp",):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777
            tar.addfile(info)


def prune_dangling(step: Step) -> None:
    """Drop the harness's images that a rebuild left without a tag."""
    step.run(["docker", "image", "prune", "--force", "--filter", f"label={BUILT_BY_LABEL}"])


def remove_container(name: str) -> None:
    probe(["docker", "rm", "-f", name])
