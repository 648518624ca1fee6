"""The Go programs inside the offline kind node image, pinned by harness.versions."""

from __future__ import annotations

from harness import paths, versions
from harness.build.gobuild import GoBuild

KUBERNETES_BINARIES = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)


def _kubernetes_version_ldflags() -> tuple[str, ...]:
    """Without these kubeadm and the components report a placeholder version."""
    major, minor = versions.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": versions.KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": versions.KUBERNETES_BUILD_DATE,
    }
    return tuple(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    )


KUBERNETES = GoBuild(
    name="kubernetes",
    module="k8s.io/kubernetes",
    version=versions.KUBERNETES_VERSION,
    packages=tuple(f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_BINARIES),
    ldflags=("-s", "-w", *_kubernetes_version_ldflags()),
    zero_versions_become=versions.KUBERNETES_STAGING_VERSION,
)

ETCD = GoBuild(
    name="etcd",
    module=versions.ETCD_MODULE,
    version=versions.ETCD_VERSION,
    packages=(versions.ETCD_MODULE,),
    ldflags=("-s", "-w"),
    binaries=("etcd",),
)

COREDNS = GoBuild(
    name="coredns",
    module=versions.COREDNS_MODULE,
    version=versions.COREDNS_VERSION,
    packages=(versions.COREDNS_MODULE,),
    ldflags=("-s", "-w"),
)

LOCAL_PATH_PROVISIONER = GoBuild(
    name="local-path-provisioner",
    module=versions.LOCAL_PATH_PROVISIONER_MODULE,
    version=versions.LOCAL_PATH_PROVISIONER_VERSION,
    packages=(versions.LOCAL_PATH_PROVISIONER_MODULE,),
    ldflags=("-s", "-w", f"-X main.VERSION={versions.LOCAL_PATH_PROVISIONER_VERSION}"),
)

# kind's kindnetd lives in a nested module the Go proxy does not serve; this
# stand-in from images/kindnetd does its job (CNI config, masquerade,
# NetworkPolicy) under the image name kind's manifest expects.
KINDNETD = GoBuild(
    name="kindnetd",
    module="local",
    version=versions.KINDNETD_IMAGE.rsplit(":", 1)[-1],
    packages=("./cmd/kindnetd",),
    ldflags=("-s", "-w"),
    local_dir=paths.IMAGES_DIR / "kindnetd",
)

ALL = (KUBERNETES, ETCD, COREDNS, LOCAL_PATH_PROVISIONER, KINDNETD)
