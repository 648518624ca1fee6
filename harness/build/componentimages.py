"""Images that run inside the kind node, tagged with the exact names kubeadm and kind expect.

Nothing can be pulled, so each one is made here: static binaries on an empty
image (control plane, etcd, coredns, pause, local-path-provisioner), binaries
that call iptables on a Debian rootfs (kube-proxy, kindnetd), and busybox for
the local-path helper.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness import paths, versions
from harness.build import components, docker, gobuild, rootfs
from harness.host import machine
from harness.steps import HarnessError, Step, step

REGISTRY = "registry.k8s.io"
# The docker build context of the images whose binary calls iptables (kube-proxy, kindnetd).
IPTABLES_CONTEXT = paths.IMAGES_DIR / "iptables"


def control_plane_images() -> dict[str, str]:
    """kubeadm's image names for this Kubernetes version (component -> image)."""
    kube = versions.KUBERNETES_VERSION
    return {
        "kube-apiserver": f"{REGISTRY}/kube-apiserver:{kube}",
        "kube-controller-manager": f"{REGISTRY}/kube-controller-manager:{kube}",
        "kube-scheduler": f"{REGISTRY}/kube-scheduler:{kube}",
        "kube-proxy": f"{REGISTRY}/kube-proxy:{kube}",
        "etcd": f"{REGISTRY}/etcd:{versions.ETCD_IMAGE_TAG}",
        "coredns": f"{REGISTRY}/coredns/coredns:{versions.COREDNS_VERSION}",
    }


def pause_images() -> list[str]:
    """kubeadm lists one pause tag, kind's containerd config pins another: provide both."""
    return [
        f"{REGISTRY}/pause:{versions.PAUSE_VERSION}",
        f"{REGISTRY}/pause:{versions.KIND_SANDBOX_PAUSE_VERSION}",
    ]


def build_all() -> list[str]:
    """Build every image the node preloads; returns their names."""
    kubernetes = gobuild.build(components.KUBERNETES)
    etcd = gobuild.build(components.ETCD)
    coredns = gobuild.build(components.COREDNS)
    provisioner = gobuild.build(components.LOCAL_PATH_PROVISIONER)
    kindnetd = gobuild.build(components.KINDNETD)
    iptables_base = rootfs.ensure(rootfs.IPTABLES)
    helper = rootfs.busybox_image()
    names = control_plane_images()
    with step("build node component images") as current:
        _check_kubeadm_list(current, kubernetes / "kubeadm", [*names.values(), *pause_images()])
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            _static_image(current, names[name], {f"/usr/local/bin/{name}": kubernetes / name})
        _static_image(current, names["etcd"], {"/usr/local/bin/etcd": etcd / "etcd"})
        _static_image(
            current, names["coredns"], {"/coredns": coredns / "coredns"}, entrypoint=["/coredns"]
        )
        _static_image(
            current,
            versions.LOCAL_PATH_PROVISIONER_IMAGE,
            {"/usr/local/bin/local-path-provisioner": provisioner / "local-path-provisioner"},
        )
        _iptables_image(
            current,
            iptables_base,
            names["kube-proxy"],
            kubernetes / "kube-proxy",
            "/usr/local/bin/kube-proxy",
        )
        _iptables_image(
            current, iptables_base, versions.KINDNETD_IMAGE, kindnetd / "kindnetd", "/bin/kindnetd"
        )
        current.run(["docker", "tag", helper, versions.LOCAL_PATH_HELPER_IMAGE])
        pause, *aliases = pause_images()
        _static_image(
            current,
            pause,
            {"/pause": _build_pause(current)},
            entrypoint=["/pause"],
            user="65535:65535",
        )
        for alias in aliases:
            current.run(["docker", "tag", pause, alias])
    return [
        *names.values(),
        *pause_images(),
        versions.KINDNETD_IMAGE,
        versions.LOCAL_PATH_PROVISIONER_IMAGE,
        versions.LOCAL_PATH_HELPER_IMAGE,
    ]


def _check_kubeadm_list(current: Step, kubeadm: Path, provided: list[str]) -> None:
    """Every image kubeadm will ask for must be among those built (as kind checks)."""
    listed = current.output(
        [kubeadm, "config", "images", "list", "--kubernetes-version", versions.KUBERNETES_VERSION]
    ).split()
    missing = sorted(set(listed) - set(provided))
    if missing:
        raise HarnessError(f"kubeadm needs {missing}: update the pins in harness/versions.py")


def _static_image(
    current: Step,
    tag: str,
    files: dict[str, Path],
    *,
    entrypoint: list[str] | None = None,
    user: str | None = None,
) -> None:
    with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as work:
        tarball = Path(work) / "image.tar"
        docker.write_files_tar(tarball, files)
        docker.import_tar(current, tarball, tag, entrypoint=entrypoint, user=user)


def _iptables_image(current: Step, base: str, tag: str, binary: Path, dest: str) -> None:
    with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as work:
        context = Path(work)
        shutil.copytree(IPTABLES_CONTEXT, context, dirs_exist_ok=True)
        shutil.copy2(binary, context / binary.name)
        args = {"BASE_IMAGE": base, "BINARY": binary.name, "DEST": dest}
        docker.build(current, context, tag, args)


def _build_pause(current: Step) -> Path:
    """Compile Kubernetes' pause.c statically, as its build/pause Makefile does."""
    gcc = machine.require_commands({"gcc": "gcc"})["gcc"]
    source = (
        gobuild.module_dir("k8s.io/kubernetes", versions.KUBERNETES_VERSION)
        / "build/pause/linux/pause.c"
    )
    out_dir = paths.cache_dir() / "pause" / versions.PAUSE_VERSION
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "pause"
    if not binary.is_file():
        current.run(
            [
                gcc,
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{versions.PAUSE_VERSION}",
                "-o",
                binary,
                source,
            ]
        )
    return binary
