"""Fixtures of the gate's unit tests: nothing they run writes to the work tree or ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def scratch_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step logs, caches and the kubeconfig path under tmp_path (harness.paths reads both)."""
    monkeypatch.setenv("PG_GATEWAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PG_GATEWAY_ARTIFACTS", str(tmp_path / "artifacts"))
