"""Every pinned version the gate depends on, in one place.

Changing a pin here changes the cache keys of everything built from it, so a
bump rebuilds exactly what it must and nothing else.
"""

from __future__ import annotations

# The oldest Go that builds every module below (the `go` line of the throwaway modules).
GO_MINIMUM = "1.24.0"

KIND_MODULE = "sigs.k8s.io/kind"
KIND_VERSION = "v0.30.0"

# The manifest linter beside the project's own rules (`nox -s lint`), built like kind.
KUBE_SCORE_PACKAGE = "github.com/zegl/kube-score/cmd/kube-score"
KUBE_SCORE_VERSION = "v1.20.0"

# The GitHub workflow's linter (`nox -s lint`), built with `go install` like kind.
ACTIONLINT_PACKAGE = "github.com/rhysd/actionlint/cmd/actionlint"
ACTIONLINT_VERSION = "v1.7.12"

KUBERNETES_VERSION = "v1.34.4"
# The schemas the manifest lint validates against: the cluster's minor version.
KUBERNETES_MINOR = KUBERNETES_VERSION.lstrip("v").rsplit(".", 1)[0]
# Staging modules follow the main module as v0.<minor>.<patch>.
KUBERNETES_STAGING_VERSION = "v0.34.4"
# Fixed so rebuilding the same sources gives the same binaries (and cache hits).
KUBERNETES_BUILD_DATE = "2025-01-01T00:00:00Z"
# The image kind v0.30.0 publishes for this minor; used where a registry answers.
KINDEST_NODE_IMAGE = "kindest/node:v1.34.0"

ETCD_MODULE = "go.etcd.io/etcd/server/v3"
ETCD_VERSION = "v3.6.5"
ETCD_IMAGE_TAG = "3.6.5-0"

COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.12.1"

PAUSE_VERSION = "3.10.1"
# kind's containerd config pins this sandbox image; kubeadm lists PAUSE_VERSION.
KIND_SANDBOX_PAUSE_VERSION = "3.10"

LOCAL_PATH_PROVISIONER_MODULE = "github.com/rancher/local-path-provisioner"
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"

# Exact image names kind v0.30.0 writes into its default CNI and storage manifests
# (pkg/build/nodeimage/const_cni.go and const_storage.go).
KINDNETD_IMAGE = "docker.io/kindest/kindnetd:v20250512-df8de77b"
LOCAL_PATH_PROVISIONER_IMAGE = "docker.io/kindest/local-path-provisioner:v20250214-acbabc1a"
LOCAL_PATH_HELPER_IMAGE = "docker.io/kindest/local-path-helper:v20241212-8ac705d0"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

# Public images used as they are where a registry answers.
# The Dockerfile's default BASE_IMAGE (a Dockerfile cannot import this: keep them equal).
OFFICIAL_PYTHON_IMAGE = "python:3.11-slim-bookworm"
OFFICIAL_BUSYBOX_IMAGE = "busybox:1.36"

# Tags of the offline images the project's own images and tests build on.
PYTHON_BASE_IMAGE = "pg-gateway/python-base:bookworm"
POSTGRES_IMAGE = "pg-gateway/postgres:15-bookworm"
BUSYBOX_IMAGE = "pg-gateway/busybox:bookworm"
NODE_IMAGE_REPO = "pg-gateway/kind-node"
