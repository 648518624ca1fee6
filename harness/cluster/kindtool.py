"""The kind CLI at exactly the pinned version: found on PATH or built with `go install`."""

from __future__ import annotations

import shutil

from harness import names, versions
from harness.build import gobuild
from harness.steps import probe

# kind labels the node containers of a cluster so: Docker alone can tell whether it exists.
NODE_LABEL = f"io.x-k8s.kind.cluster={names.CLUSTER}"


def _version_of(binary: str) -> str | None:
    result = probe([binary, "version"])
    # e.g. "kind v0.30.0 go1.24.6 linux/amd64"
    words = result.stdout.split()
    return words[1] if result.returncode == 0 and len(words) > 1 else None


def find_kind() -> str | None:
    """A kind of exactly versions.KIND_VERSION on PATH or in the cache, if any."""
    cached = gobuild.installed_tool(versions.KIND_MODULE, versions.KIND_VERSION)
    for candidate in (shutil.which("kind"), str(cached)):
        if candidate and _version_of(candidate) == versions.KIND_VERSION:
            return candidate
    return None


def ensure_kind() -> str:
    """Path of a kind binary of versions.KIND_VERSION, built with `go install` if needed."""
    return find_kind() or str(gobuild.go_install(versions.KIND_MODULE, versions.KIND_VERSION))


def cluster_exists(kind: str) -> bool:
    """`kind get clusters` lists ours."""
    return names.CLUSTER in probe([kind, "get", "clusters"]).stdout.split()
