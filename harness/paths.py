"""Where the harness keeps caches, logs and the kubeconfig.

Caches live outside the work tree so a fresh clone (as CI makes) on the same
machine still reuses them; logs live in the work tree so CI can collect them.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import names

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"
MANIFESTS_DIR = REPO_ROOT / "manifests"
# What the e2e checks deploy: the NodePort on 127.0.0.1, the locally built images.
KIND_OVERLAY = MANIFESTS_DIR / "overlays" / "kind"
# The same with PostgreSQL as the three-member Patroni cluster (components/postgres-ha).
KIND_HA_OVERLAY = MANIFESTS_DIR / "overlays" / "kind-ha"
ARTIFACTS_DIR = REPO_ROOT / "artifacts"
# The e2e run's timeline and, after a failure, its diagnostics (one directory a namespace).
E2E_ARTIFACTS = ARTIFACTS_DIR / "e2e"


def cache_root() -> Path:
    """Machine-wide cache root (override with PG_GATEWAY_CACHE), whether it exists or not."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pg-gateway"
    return Path(os.environ.get("PG_GATEWAY_CACHE", default))


def cache_dir() -> Path:
    """The cache root, made if missing: for code that writes into it."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    """Full logs of every step (override with PG_GATEWAY_ARTIFACTS)."""
    root = Path(os.environ.get("PG_GATEWAY_ARTIFACTS", ARTIFACTS_DIR))
    path = root / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubeconfig_path() -> Path:
    """The kubeconfig `cluster up` writes for the managed cluster (kind makes its directory)."""
    return cache_root() / f"kubeconfig-{names.CLUSTER}.yaml"
