"""Debian root filesystems turned into local images, with no registry involved.

Every image the gate needs starts from one of these (or from nothing): a
rootfs made by debootstrap from Debian's mirror, imported with `docker import`
and tagged by a hash of what went into it, so it is built once per machine.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import paths, versions
from harness.build import docker
from harness.host import machine
from harness.steps import step

# Trimmed after install: nothing at run time reads these.
PRUNED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/log",
)


@dataclass(frozen=True)
class Rootfs:
    """A debootstrap rootfs: its name and the packages added to minbase."""

    name: str
    packages: tuple[str, ...]

    def key(self) -> str:
        text = "\n".join([versions.DEBIAN_SUITE, versions.DEBIAN_MIRROR, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"pg-gateway/rootfs-{self.name}:{versions.DEBIAN_SUITE}-{self.key()}"


PYTHON = Rootfs("python", ("python3", "python3-venv", "ca-certificates"))
# python3 for Patroni (images/postgres/Dockerfile installs it into a virtualenv).
POSTGRES = Rootfs("postgres", ("postgresql-15", "python3", "python3-venv", "ca-certificates"))
IPTABLES = Rootfs("iptables", ("iptables", "conntrack", "ipset", "kmod", "iproute2"))
# Mirrors the package list of kind's images/base/Dockerfile, plus what kind
# downloads as release binaries there (containerd, runc, CNI plugins).
NODE = Rootfs(
    "node",
    (
        "systemd",
        "conntrack",
        "iptables",
        "nftables",
        "iproute2",
        "ethtool",
        "util-linux",
        "mount",
        "kmod",
        "libseccomp2",
        "pigz",
        "fuse-overlayfs",
        "nfs-common",
        "open-iscsi",
        "bash",
        "ca-certificates",
        "curl",
        "jq",
        "procps",
        "socat",
        "containerd",
        "runc",
        "containernetworking-plugins",
    ),
)


def ensure(rootfs: Rootfs) -> str:
    """Return the tag of the rootfs image, building it if this machine lacks it."""
    if docker.image_exists(rootfs.tag):
        return rootfs.tag
    machine.require_commands({"debootstrap": "debootstrap"})
    with step(f"debootstrap {versions.DEBIAN_SUITE} rootfs '{rootfs.name}'") as current:
        debs = paths.cache_dir() / "debootstrap-debs"
        debs.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(
            dir=paths.cache_dir(), prefix=f"rootfs-{rootfs.name}-"
        ) as work:
            target = Path(work) / "root"
            current.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(rootfs.packages)}",
                    f"--cache-dir={debs}",
                    versions.DEBIAN_SUITE,
                    target,
                    versions.DEBIAN_MIRROR,
                ]
            )
            for pruned in PRUNED:
                shutil.rmtree(target / pruned, ignore_errors=True)
                (target / pruned).mkdir(parents=True, exist_ok=True)
            tarball = Path(work) / "rootfs.tar"
            current.run(["tar", "--numeric-owner", "-C", target, "-cf", tarball, "."])
            docker.import_tar(current, tarball, rootfs.tag)
    return rootfs.tag


def busybox_image() -> str:
    """A tiny image from Debian's busybox-static: probe container, local-path helper."""
    tag = versions.BUSYBOX_IMAGE
    if docker.image_exists(tag):
        return tag
    if docker.available(versions.OFFICIAL_BUSYBOX_IMAGE):
        with step(f"tag {versions.OFFICIAL_BUSYBOX_IMAGE} as {tag}") as current:
            current.run(["docker", "tag", versions.OFFICIAL_BUSYBOX_IMAGE, tag])
        return tag
    busybox = machine.require_commands({"busybox": "busybox-static"})["busybox"]
    with step("build busybox image") as current:
        applets = current.output([busybox, "--list"]).split()
        with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as work:
            root = Path(work) / "root"
            (root / "bin").mkdir(parents=True)
            shutil.copy2(busybox, root / "bin" / "busybox")
            for applet in applets:
                if applet != "busybox":
                    (root / "bin" / applet).symlink_to("busybox")
            (root / "tmp").mkdir(mode=0o1777)
            tarball = Path(work) / "rootfs.tar"
            current.run(
                [
                    "tar",
                    "--numeric-owner",
                    "--owner=0",
                    "--group=0",
                    "-C",
                    root,
                    "-cf",
                    tarball,
                    ".",
                ]
            )
            docker.import_tar(current, tarball, tag, cmd=["sh"])
    return tag
