"""The kind CLI at exactly the pinned version: found on PATH or built with `go install`."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import paths, versions
from harness.steps import HarnessError, probe, step


def _version_of(binary: str) -> str | None:
    result = probe([binary, "version"])
    # e.g. "kind v0.30.0 go1.24.6 linux/amd64"
    words = result.stdout.split()
    return words[1] if result.returncode == 0 and len(words) > 1 else None


def ensure_kind() -> str:
    """Path of a kind binary of versions.KIND_VERSION."""
    on_path = shutil.which("kind")
    if on_path and _version_of(on_path) == versions.KIND_VERSION:
        return on_path
    gobin = paths.cache_dir() / "kind" / versions.KIND_VERSION
    cached = gobin / "kind"
    if cached.is_file() and _version_of(str(cached)) == versions.KIND_VERSION:
        return str(cached)
    if shutil.which("go") is None:
        raise HarnessError(
            f"kind {versions.KIND_VERSION} is needed: install it, or install Go so it can be built"
        )
    with step(f"go install {versions.KIND_MODULE}@{versions.KIND_VERSION}") as current:
        gobin.mkdir(parents=True, exist_ok=True)
        current.run(
            ["go", "install", f"{versions.KIND_MODULE}@{versions.KIND_VERSION}"],
            env={"GOBIN": str(gobin), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
            cwd=Path(gobin),
        )
    return str(cached)
