"""`python -m harness.cluster up|down|status|purge|images` (also `nox -s cluster -- ...`).

`images` builds the images the kind overlay runs (`pg-gateway/gateway:dev` from this
repository, PostgreSQL) and loads them into the cluster: what `scripts/deploy.sh kind NS`
needs there, and names when they are missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from harness import build, cluster, names, versions
from harness.build import docker
from harness.cluster import kindtool, node, purge, shape
from harness.cluster.kindcluster import marker
from harness.host import engine
from harness.paths import kubeconfig_path
from harness.steps import probe, run_cli


def status() -> int:
    """Report each layer; exit code 0 only when the cluster answers."""
    if not engine.docker_answers():
        print("docker: no engine answers (`up` installs/starts one where it can)")
        return 1
    print("docker: engine answers")
    kind = kindtool.find_kind()
    if kind is None:
        print(f"kind {versions.KIND_VERSION}: not installed (`up` builds it)")
        return 1
    print(f"kind: {kind} ({versions.KIND_VERSION})")
    for image in (build.node_image_tag(), versions.KINDEST_NODE_IMAGE):
        found = "present" if docker.image_exists(image) else "absent"
        print(f"node image {image}: {found}")
    if not kindtool.cluster_exists(kind):
        print(f"cluster {names.CLUSTER}: absent")
        return 1
    owner = "created by this tool" if marker().exists() else "NOT created by this tool"
    print(f"cluster {names.CLUSTER}: present, {owner}; kubeconfig: {kubeconfig_path()}")
    nodes = probe(node.kubectl_argv("get", "nodes", "-o", "wide"))
    print(nodes.stdout or nodes.stderr)
    return nodes.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.cluster", description=(cluster.__doc__ or "").splitlines()[0]
    )
    parser.add_argument("command", choices=("up", "down", "status", "purge", "images"))
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="IMAGE",
        help="local docker image to load into the cluster (repeatable; up only)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        choices=range(shape.MAX_WORKERS + 1),
        default=None,
        metavar="N",
        help=f"worker nodes beside the control plane (up, images) [${shape.WORKERS_ENV}, "
        f"else {shape.DEFAULT_WORKERS}]; a cluster this tool made with another number "
        "is replaced",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what purge would remove and keep, and why, changing nothing (purge only)",
    )
    args = parser.parse_args(argv)

    def up() -> None:
        cluster.ensure_cluster(tuple(args.load), args.workers)

    def images() -> None:
        gate = cluster.ensure_cluster((), args.workers)  # Docker's engine too
        for image in build.kind_overlay_images():
            gate.load_docker_image(image)

    actions: dict[str, Callable[[], int | None]] = {
        "up": up,
        "down": cluster.delete_cluster,
        "status": status,
        "purge": lambda: purge.purge(dry_run=args.dry_run),
        "images": images,
    }
    return run_cli(actions[args.command])


if __name__ == "__main__":
    sys.exit(main())
