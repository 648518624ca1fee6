"""The node image's cache key follows its inputs, found from the inputs themselves.

A stale key reuses a node image built from old code (the gate then tests something else); a
hand-written list of inputs goes stale the day someone adds a module. The key is computed
here over copies of the real inputs, which the tests then change.
"""

from __future__ import annotations

import dataclasses
import pkgutil
import shutil
from pathlib import Path

import pytest

import harness.build
from harness.build import componentimages, components, gobuild, nodeimage
from harness.build.gobuild import GoBuild


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Copies of the build package and of the build contexts, read by the key instead."""
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.24.6")  # no `go` subprocess
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(nodeimage.BUILD_PACKAGE, tmp_path / "build", ignore=ignore)
    monkeypatch.setattr(nodeimage, "BUILD_PACKAGE", tmp_path / "build")
    shutil.copytree(componentimages.IPTABLES_CONTEXT, tmp_path / "iptables")
    monkeypatch.setattr(componentimages, "IPTABLES_CONTEXT", tmp_path / "iptables")
    specs = []
    for spec in components.ALL:
        if spec.local_dir:
            shutil.copytree(spec.local_dir, tmp_path / spec.local_dir.name)
            spec = dataclasses.replace(spec, local_dir=tmp_path / spec.local_dir.name)
        specs.append(spec)
    monkeypatch.setattr(components, "ALL", tuple(specs))
    return tmp_path


def test_every_module_of_the_build_package_is_an_input() -> None:
    modules = {info.name for info in pkgutil.iter_modules(harness.build.__path__)}
    assert modules >= {"nodeimage", "componentimages", "gobuild", "rootfs"}
    assert {f"build/{name}.py" for name in modules} <= set(nodeimage.key_inputs())
    assert "versions.py" in nodeimage.key_inputs()


def test_the_key_is_stable_for_unchanged_inputs(inputs: Path) -> None:
    assert nodeimage.node_image_key() == nodeimage.node_image_key()


@pytest.mark.parametrize(
    "changed",
    ["build/rootfs.py", "kindnetd/cmd/kindnetd/main.go", "iptables/Dockerfile"],
)
def test_changing_an_input_file_changes_the_key(inputs: Path, changed: str) -> None:
    before = nodeimage.node_image_key()
    with (inputs / changed).open("a") as handle:
        handle.write("\n// changed\n")
    assert nodeimage.node_image_key() != before


@pytest.mark.parametrize("added", ["build/newmodule.py", "kindnetd/cmd/kindnetd/extra.go"])
def test_a_file_nobody_listed_changes_the_key(inputs: Path, added: str) -> None:
    before = nodeimage.node_image_key()
    (inputs / added).write_text("// new\n")
    assert nodeimage.node_image_key() != before


def test_a_new_component_brings_its_build_context_into_the_key(
    inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = inputs / "newcomponent"
    context.mkdir()
    (context / "main.go").write_text("package main\n")
    before = nodeimage.node_image_key()
    spec = GoBuild(name="new", module="local", version="v0", packages=("./",), local_dir=context)
    monkeypatch.setattr(components, "ALL", (*components.ALL, spec))
    with_component = nodeimage.node_image_key()
    assert with_component != before
    (context / "main.go").write_text("package main // changed\n")
    assert nodeimage.node_image_key() != with_component


def test_bytecode_caches_do_not_change_the_key(inputs: Path) -> None:
    before = nodeimage.node_image_key()
    (inputs / "build" / "__pycache__").mkdir(exist_ok=True)
    (inputs / "build" / "__pycache__" / "nodeimage.cpython-311.pyc").write_bytes(b"\0")
    assert nodeimage.node_image_key() == before


def test_another_go_toolchain_changes_the_key(
    inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = nodeimage.node_image_key()
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.25.0")
    assert nodeimage.node_image_key() != before
