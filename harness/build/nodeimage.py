"""The kind node image: pulled where a registry answers, else assembled offline.

Offline assembly repeats what `kind build node-image` and kind's base image
Dockerfile do, minus every download: a Debian rootfs with systemd, containerd,
runc and CNI plugins, kind's base files, the Kubernetes binaries, the default
CNI and storage manifests, and every image kubeadm and kind need preloaded into
containerd's k8s.io namespace. The result is tagged by a hash of its inputs so
a machine builds it once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import paths, versions
from harness.build import componentimages, components, docker, gobuild, kindsource, rootfs
from harness.steps import Step, probe, say, step

KEY_LABEL = "io.pg-gateway.node-image.key"
EXECUTABLE_DIRS = ("usr/local/bin", "kind/bin")
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")
# This package: the code that builds the image decides what it holds.
BUILD_PACKAGE = Path(__file__).parent

# The RUN steps of kind's images/base/Dockerfile, then kind's image preloading
# (pkg/build/nodeimage/imageimporter.go), run inside the build container.
SETUP_SCRIPT = r"""
set -euxo pipefail
find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni/bin
# kind's units and CNI config expect its install paths for Debian's packages.
ln -sf /usr/bin/containerd /usr/local/bin/containerd
cp /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/ptp /usr/lib/cni/portmap /opt/cni/bin/
# Without CAP_SYS_RESOURCE (see harness/host/engine.py) no process may lower its oom_score_adj,
# so runc fails to start pods whose score is below containerd's: clamp instead.
sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer| length] |=
          . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
nohup containerd > /tmp/containerd.log 2>&1 &
for i in $(seq 60); do ctr version > /dev/null 2>&1 && break; sleep 1; done
ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests /kind/images.tar
ctr --namespace=k8s.io images list -q
pkill -x containerd
while pgrep -x containerd > /dev/null; do sleep 0.5; done
rm -rf /kind/images.tar /tmp/* /var/log/*
"""


def key_inputs() -> dict[str, Path]:
    """Every file whose content decides what the image holds, found from the inputs: the
    source of this package and of harness.versions, and the build contexts the component
    builds declare (each Go build's local module, the iptables image context).

    Keys are the files' paths from their root's parent (`build/nodeimage.py`).
    """
    contexts = [spec.local_dir for spec in components.ALL if spec.local_dir]
    roots = [BUILD_PACKAGE, Path(versions.__file__), *contexts, componentimages.IPTABLES_CONTEXT]
    inputs: dict[str, Path] = {}
    for root in roots:
        found = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in found:
            if path.is_file() and "__pycache__" not in path.parts:
                inputs[path.relative_to(root.parent).as_posix()] = path
    return inputs


def node_image_key() -> str:
    """A hash of the Go toolchain's version and of every input file's name and content."""
    digest = hashlib.sha256(gobuild.go_version().encode())
    for name, path in sorted(key_inputs().items()):
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def offline_tag() -> str:
    return f"{versions.NODE_IMAGE_REPO}:{versions.KUBERNETES_VERSION}-{node_image_key()}"


def ensure_node_image() -> str:
    """A node image for versions.KUBERNETES_VERSION: cached, pulled, or assembled."""
    tag = offline_tag()
    if docker.image_exists(tag):
        return tag
    if docker.available(versions.KINDEST_NODE_IMAGE):
        return versions.KINDEST_NODE_IMAGE
    say(f"    {versions.KINDEST_NODE_IMAGE} cannot be pulled: assembling {tag} offline")
    _assemble(tag)
    return tag


def _prepare_inputs() -> None:
    """Debootstrap waits on the network and disk, go build on the CPU: overlap them."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        rootfs_images = pool.submit(
            lambda: [rootfs.ensure(r) for r in (rootfs.NODE, rootfs.IPTABLES)]
        )
        for spec in components.ALL:
            gobuild.build(spec)
        rootfs_images.result()


def _assemble(tag: str) -> None:
    kindsource.check_pins()
    _prepare_inputs()
    images = componentimages.build_all()
    kubernetes = gobuild.build(components.KUBERNETES)
    base = rootfs.ensure(rootfs.NODE)
    with (
        step("assemble kind node image") as current,
        tempfile.TemporaryDirectory(dir=paths.cache_dir()) as work,
    ):
        stage = Path(work) / "stage"
        _stage_files(stage, kubernetes)
        images_tar = Path(work) / "images.tar"
        current.run(["docker", "save", "-o", images_tar, *images])
        container = f"pg-gateway-node-build-{os.getpid()}"
        docker.remove_container(container)
        current.run(
            ["docker", "run", "-d", "--name", container, "--entrypoint", "sleep", base, "infinity"]
        )
        try:
            current.run(["docker", "cp", f"{stage}/.", f"{container}:/"])
            current.run(["docker", "cp", images_tar, f"{container}:/kind/images.tar"])
            current.run(["docker", "exec", container, "bash", "-c", SETUP_SCRIPT])
            _commit(current, container, tag)
        finally:
            docker.remove_container(container)
        _remove_older_node_images(current, keep=tag)
        docker.prune_dangling(current)


def _remove_older_node_images(current: Step, keep: str) -> None:
    """Each change of inputs makes a new 1.3 GB image: drop older ones no node runs on."""
    listed = current.output(
        ["docker", "images", versions.NODE_IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}"]
    )
    for old in set(listed.split()) - {keep}:
        probe(["docker", "rmi", old])  # refused, and kept, while a cluster node uses it


def _stage_files(stage: Path, kubernetes: Path) -> None:
    """Lay out kind's base files, the node binaries and kind's /kind files with kind's modes."""
    base_files = kindsource.base_files()
    for source in sorted(base_files.rglob("*")):
        relative = source.relative_to(base_files)
        target = stage / relative
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o755)
            continue
        shutil.copyfile(source, target)
        executable = any(relative.as_posix().startswith(prefix + "/") for prefix in EXECUTABLE_DIRS)
        target.chmod(0o755 if executable else 0o644)
    (stage / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    for name in NODE_BINARIES:
        shutil.copyfile(kubernetes / name, stage / "usr" / "bin" / name)
        (stage / "usr" / "bin" / name).chmod(0o755)
    (stage / "kind" / "version").write_text(versions.KUBERNETES_VERSION)
    manifests = stage / "kind" / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "default-cni.yaml").write_text(
        kindsource.manifest("const_cni.go", "defaultCNIManifest")
    )
    (manifests / "default-storage.yaml").write_text(
        kindsource.manifest("const_storage.go", "defaultStorageManifest")
    )
    for directory in [stage, *(path for path in stage.rglob("*") if path.is_dir())]:
        directory.chmod(0o755)


def _commit(current: Step, container: str, tag: str) -> None:
    """Commit with the metadata of kind's base image (entrypoint, env, stop signal)."""
    changes = [
        'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
        "CMD []",
        "ENV container=docker",
        f"LABEL {KEY_LABEL}={node_image_key()}",
    ]
    args: list[str] = ["docker", "commit"]
    for change in changes:
        args += ["--change", change]
    current.run([*args, container, tag])
    # `docker commit --change` cannot set a stop signal; a metadata-only build can.
    # systemd exits on SIGRTMIN+3 (SIGTERM makes it re-execute).
    with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as context:
        (Path(context) / "Dockerfile").write_text(f"FROM {tag}\nSTOPSIGNAL SIGRTMIN+3\n")
        docker.build(current, Path(context), tag)
