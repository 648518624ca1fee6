"""`up`: the ordered actions that take a bare machine to a ready kind cluster.

As kind's own `create`, `up` is a list of small actions run in order; each announces itself
as a step and, when it fails, says what to do next. The actions make the host, kind and the
node image ready, then pytest-kind's `create()` (the `GateCluster` of kindcluster.py)
creates or reuses the cluster. Whatever already exists is reused (a running cluster, the
cached node image), so a warm `up` takes seconds. A cluster created here is marked, so
`down` never deletes another one. A cluster of another shape (its nodes are not one control
plane and `workers` workers) is replaced only when it bears that mark; another is left alone
and `up` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import build, names, versions
from harness.cluster import kindtool, node
from harness.cluster.kindcluster import GateCluster, marker
from harness.cluster.shape import node_names, worker_count
from harness.host import engine
from harness.paths import kubeconfig_path
from harness.steps import HarnessError, Step, format_seconds, say, step


@dataclass
class Up:
    """What the actions of one `up` learn and hand on."""

    images: tuple[str, ...]
    workers: int = 0
    kubeconfig: Path = field(default_factory=kubeconfig_path)
    kind: str = ""
    exists: bool = False  # the cluster existed before this `up`
    node_image: str = ""
    nodes: tuple[str, ...] = ()  # the existing cluster's node containers

    def cluster(self) -> GateCluster:
        """pytest-kind's cluster object with what the actions have found so far."""
        return GateCluster(self.kind, image=self.node_image or None, workers=self.workers)

    @property
    def other_shape(self) -> bool:
        """The existing cluster is not one control plane and `workers` workers."""
        return self.exists and list(self.nodes) != node_names(self.workers)


@dataclass(frozen=True)
class Action:
    """One step of `up`: its name, its work, what to do when it fails, and when it runs.

    `name` and `remedy` may show what the actions learnt, as `{node_image}` (fields of `Up`).
    """

    name: str
    run: Callable[[Step, Up], None]
    remedy: str
    when: Callable[[Up], bool] = lambda _up: True


def _provision_host(_current: Step, _up: Up) -> None:
    """A Docker engine that runs privileged containers, as kind's nodes are."""
    engine.ensure_engine()
    engine.ensure_privileged(build.busybox_image())


def _find_kind(current: Step, up: Up) -> None:
    """kind at the pinned version, and whether it already runs our cluster."""
    up.kind = kindtool.ensure_kind()
    up.exists = kindtool.cluster_exists(up.kind)
    if up.exists:
        up.nodes = tuple(up.cluster().nodes())
    current.log(f"kind: {up.kind}; cluster {names.CLUSTER} exists: {up.exists} {up.nodes}")


def _replace(_current: Step, up: Up) -> None:
    """A cluster of another shape goes, if this tool made it (its mark), to be made anew."""
    if not marker().exists():
        raise HarnessError(
            f"kind cluster {names.CLUSTER} has the nodes {', '.join(up.nodes)}, not "
            f"{', '.join(node_names(up.workers))}, and was not created by this tool"
        )
    up.cluster().delete()
    up.exists, up.nodes = False, ()


def _node_image(current: Step, up: Up) -> None:
    up.node_image = build.node_image()
    current.log(f"node image: {up.node_image}")


def _create(_current: Step, up: Up) -> None:
    up.cluster().create()


def _reuse(current: Step, up: Up) -> None:
    """Start the nodes if a restart stopped them, check the ports, export the kubeconfig."""
    node.ensure_control_plane_answers(current, up.nodes)
    node.check_port_mappings()
    up.cluster().create()


def _wait_for_workloads(current: Step, _up: Up) -> None:
    node.wait_for_workloads(current)


def _load_images(_current: Step, up: Up) -> None:
    cluster = up.cluster()
    for image in up.images:
        cluster.load_docker_image(image)


AGAIN = "then `python -m harness.cluster up` again"
ACTIONS = (
    Action(
        "Docker engine for privileged containers",
        _provision_host,
        "`docker info` and `docker run --privileged` must work for this user (as root on a "
        f"Debian-like machine the harness sets up docker.io itself); {AGAIN}",
    ),
    Action(
        f"kind {versions.KIND_VERSION}",
        _find_kind,
        f"put kind {versions.KIND_VERSION} on PATH, or install Go {versions.GO_MINIMUM} or "
        f"newer so the harness builds it; {AGAIN}",
    ),
    Action(
        f"replace kind cluster {names.CLUSTER}: not 1 control plane + {{workers}} workers",
        _replace,
        f"delete it yourself (`kind delete cluster --name {names.CLUSTER}`) or set "
        f"PG_GATEWAY_WORKERS to its number of workers; {AGAIN}",
        when=lambda up: up.other_shape,
    ),
    Action(
        f"node image for Kubernetes {versions.KUBERNETES_VERSION}",
        _node_image,
        f"the step log above names the build that failed; fix it, {AGAIN} (what was built is "
        "cached and not built twice)",
        when=lambda up: not up.exists,
    ),
    Action(
        f"create kind cluster {names.CLUSTER} ({{node_image}})",
        _create,
        f"`python -m harness.cluster down` removes a half-made cluster; {AGAIN}",
        when=lambda up: not up.exists,
    ),
    Action(
        f"reuse kind cluster {names.CLUSTER}",
        _reuse,
        f"`python -m harness.cluster down` deletes it; {AGAIN} to start from a new cluster",
        when=lambda up: up.exists,
    ),
    Action(
        "system workloads ready",
        _wait_for_workloads,
        "`kubectl --kubeconfig {kubeconfig} get pods -A` shows which pod is not ready; "
        f"if it stays so, `python -m harness.cluster down`, {AGAIN}",
    ),
    Action(
        "load images into every node",
        _load_images,
        "each image must exist locally (`docker image inspect IMAGE`)",
        when=lambda up: bool(up.images),
    ),
)


def ensure_cluster(images: tuple[str, ...] = (), workers: int | None = None) -> GateCluster:
    """Run `up`'s actions in order: create or reuse the cluster with `workers` workers
    (None: $PG_GATEWAY_WORKERS, else the default), load `images` into it."""
    started = time.monotonic()
    up = Up(images, worker_count() if workers is None else workers)
    for action in ACTIONS:
        if not action.when(up):
            continue
        try:
            with step(action.name.format_map(vars(up))) as current:
                action.run(current, up)
        except HarnessError as error:
            remedy = action.remedy.format_map(vars(up))
            raise HarnessError(f"{error}\n  what to do: {remedy}") from error
    say(
        f"cluster {names.CLUSTER} ready in {format_seconds(time.monotonic() - started)}; "
        f"kubeconfig: {up.kubeconfig}"
    )
    return up.cluster()
