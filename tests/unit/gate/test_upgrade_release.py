"""The upgrade check's inputs: the previous release is an ancestor in this history, its tree
comes out whole, and the renderings get the check's own NodePort."""

from __future__ import annotations

import subprocess

import pytest

from harness import names, paths
from harness.e2e import upgrade
from harness.steps import HarnessError


def test_the_previous_release_is_an_ancestor_of_this_commit() -> None:
    git = ["git", "-C", str(paths.REPO_ROOT)]
    ancestor = subprocess.run(
        [*git, "merge-base", "--is-ancestor", upgrade.PREVIOUS_RELEASE, "HEAD"], check=False
    )
    assert ancestor.returncode == 0, f"{upgrade.PREVIOUS_RELEASE} is not an ancestor of HEAD"


def test_its_tree_holds_the_kind_overlay_and_the_gateways_source(tmp_path) -> None:
    tree = upgrade.export_release(upgrade.PREVIOUS_RELEASE, tmp_path)
    assert (tree / "manifests" / "overlays" / "kind" / "kustomization.yaml").is_file()
    assert (tree / "Dockerfile").is_file()


def test_a_ref_outside_the_history_is_named_with_the_way_out(tmp_path) -> None:
    with pytest.raises(HarnessError, match=r"0{40}.*--upgrade-from"):
        upgrade.export_release("0" * 40, tmp_path)


def test_only_the_gateway_service_gets_the_checks_node_port() -> None:
    documents = [
        {
            "kind": "Service",
            "metadata": {"name": names.GATEWAY},
            "spec": {"ports": [{"port": 80, "nodePort": names.NODE_PORT}]},
        },
        {
            "kind": "Service",
            "metadata": {"name": names.POSTGRES},
            "spec": {"ports": [{"port": 5432}]},
        },
    ]
    changed = upgrade.with_node_port(documents, upgrade.UPGRADE_NODE_PORT)
    assert changed[0]["spec"]["ports"] == [{"port": 80, "nodePort": upgrade.UPGRADE_NODE_PORT}]
    assert changed[1] == documents[1]
    assert documents[0]["spec"]["ports"][0]["nodePort"] == names.NODE_PORT  # a copy
    assert upgrade.UPGRADE_NODE_PORT != names.NODE_PORT
