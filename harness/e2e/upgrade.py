"""What the upgrade check needs besides a deployment: the previous release's tree, its
rendering beside this one's, and a NodePort of its own.

The previous release is the newest commit that passed the whole gate before this one
(`PREVIOUS_RELEASE`, or `--upgrade-from REF`); its tree comes from this clone's history with
`git archive` (a shallow clone lacks it: the check says so). Its gateway image is built from
that tree, offline, as this release's is from the work tree. The check's namespace runs
beside the main e2e deployment, so its gateway Service gets `UPGRADE_NODE_PORT`, reached on
the control-plane node's address (kind publishes only the main NodePort on 127.0.0.1).
"""

from __future__ import annotations

import copy
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from kubernetes import client

from harness import kube, names, paths
from harness.cluster.shape import CONTROL_PLANE_LABEL
from harness.steps import HarnessError

# cd147a6 landed on 2026-12-03: `bash .ci/run` from a fresh clone passed (17m45s) and so did
# CI's run after the stop (1,020 s). Move this forward to the newest commit that passed the
# gate when a release lands.
PREVIOUS_RELEASE = "cd147a6054ba1222e017b113f32765a8f5304176"
UPGRADE_NODE_PORT = 31235
Document = dict[str, Any]


def export_release(ref: str, directory: Path) -> Path:
    """The tree of commit `ref` under `directory` (its manifests and the gateway's source)."""
    archive = subprocess.run(
        ["git", "-C", str(paths.REPO_ROOT), "archive", "--format=tar", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    if archive.returncode != 0:
        raise HarnessError(
            f"the previous release {ref} is not in this clone's history "
            f"({archive.stderr.decode(errors='replace').strip()}): fetch it (`git fetch "
            "--unshallow` in a shallow clone) or name another with --upgrade-from"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def with_node_port(documents: list[Document], node_port: int) -> list[Document]:
    """A copy whose gateway Service answers on `node_port`."""
    changed = copy.deepcopy(documents)
    for document in changed:
        if document["kind"] == "Service" and document["metadata"]["name"] == names.GATEWAY:
            for port in document["spec"]["ports"]:
                if "nodePort" in port:
                    port["nodePort"] = node_port
    return changed


def postgres_pod_template(documents: list[Document]) -> Document:
    (statefulset,) = [
        d
        for d in documents
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == names.POSTGRES
    ]
    return statefulset["spec"]["template"]


def control_plane_address(core: client.CoreV1Api) -> str:
    """The InternalIP of the control-plane node, where every NodePort answers."""
    for node in core.list_node().items:
        if CONTROL_PLANE_LABEL in (node.metadata.labels or {}):
            return kube.node_address(node)
    raise HarnessError("the cluster has no control-plane node")
