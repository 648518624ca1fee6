"""The Kubernetes API as the e2e and the smoke checks both use it (the smoke checks run where
there is no kind, so nothing here knows of the cluster): small, typed, time-bounded waits on
objects, built on watches; commands in pods.

Every wait names what it waited for and what it last saw when it gives up, so a timeout
reads as a diagnosis rather than as "timed out"; a rollout wait gives up at once when its
pods show they cannot become ready (`pods`), naming each pod and why. `clients` gives the API
groups as fixtures to both plugins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch
from kubernetes.stream import stream

from harness.kube import pods
from harness.steps import HarnessError

# How often a rollout wait looks at its pods' states and events.
TROUBLE_POLL_S = 2


class CannotBecomeReady(HarnessError):
    """A wait given up before its deadline: what it waits for cannot come (`troubles`)."""

    def __init__(self, describe: str, waited_s: float, troubles: list[str]) -> None:
        super().__init__(
            f"{describe}: cannot happen, given up after {waited_s:.0f} s: " + "; ".join(troubles)
        )
        self.troubles = troubles


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client for that kubeconfig (None: $KUBECONFIG, else ~/.kube/config)."""
    return config.new_client_from_config(config_file=kubeconfig)


def exec_output(
    core: client.CoreV1Api, namespace: str, pod: str, container: str | None, *argv: str
) -> str:
    """What `argv` prints (stdout and stderr) run inside a running container (None: the
    pod's only one), exactly: read from the websocket itself, because the client parses a
    preloaded answer as JSON first and hands back a Python repr of output that parses."""
    session = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=container,
        command=list(argv),
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    try:
        session.run_forever()
        return session.read_all()
    finally:
        session.close()


def node_address(node: client.V1Node) -> str:
    """The node's InternalIP: where its kubelet and every NodePort answer."""
    for address in node.status.addresses or []:
        if address.type == "InternalIP":
            return address.address
    raise HarnessError(f"node {node.metadata.name} has no InternalIP")


# A container with bash but maybe no python or nc: /dev/tcp connects (argv: host:port ...).
_BASH_CONNECT = """
for target in "$@"; do
    if timeout 3 bash -c "exec 3<>/dev/tcp/${target%:*}/${target##*:}" 2>/dev/null
    then echo "$target connected"; else echo "$target failed"; fi
done
"""


def connections_from(
    core: client.CoreV1Api, namespace: str, pod: str, container: str, targets: list[str]
) -> dict[str, bool]:
    """host:port -> whether that container opened a TCP connection to it within 3 s."""
    output = exec_output(
        core, namespace, pod, container, "bash", "-c", _BASH_CONNECT, "connect", *targets
    )
    answers = dict(line.rsplit(" ", 1) for line in output.splitlines() if line.strip())
    if set(answers) != set(targets):
        raise HarnessError(f"connecting from {pod} to {targets} printed: {output!r}")
    return {target: answers[target] == "connected" for target in targets}


def wait_for(
    list_call: Callable[..., Any],
    namespace: str,
    name: str,
    condition: Callable[[Any], bool],
    describe: str,
    timeout_s: float,
    trouble: Callable[[Any], list[str]] | None = None,
) -> Any:
    """Watch one named object until `condition(obj)` holds; re-opens dropped watches. With
    `trouble`, every TROUBLE_POLL_S it is asked about the object last seen, and what it
    finds ends the wait at once: a condition that cannot come is not waited out."""
    started = time.monotonic()
    deadline = started + timeout_s
    last: Any = None
    while (remaining := deadline - time.monotonic()) > 0:
        chunk = remaining if trouble is None else min(remaining, TROUBLE_POLL_S)
        watcher = watch.Watch()
        try:
            for event in watcher.stream(
                list_call,
                namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(1, int(chunk)),
            ):
                last = event["object"]
                if event["type"] != "DELETED" and condition(last):
                    watcher.stop()
                    return last
        except client.ApiException as error:
            if error.status != 410:  # 410 Gone: resource version too old, just re-watch
                raise
        if trouble is not None and last is not None and (found := trouble(last)):
            raise CannotBecomeReady(describe, time.monotonic() - started, found)
    raise HarnessError(
        f"{describe}: not reached within {timeout_s:.0f}s; last seen status: "
        f"{getattr(last, 'status', None)}"
    )


class PodTroubles:
    """What keeps a workload's pods from becoming ready (`pods.troubles`), as `wait_for`
    asks it; events are counted from when it was made, so what happened before the wait
    began (a probe failing while PostgreSQL restarted) is not held against the rollout."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core = core
        self.namespace = namespace
        self.seen = {event.metadata.uid: event.count or 1 for event in self._events()}

    def _events(self) -> list[Any]:
        field_selector = "involvedObject.kind=Pod"
        return self.core.list_namespaced_event(self.namespace, field_selector=field_selector).items

    def __call__(self, workload: Any) -> list[str]:
        labels = workload.spec.selector.match_labels or {}
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [str(found) for found in pods.troubles(listed, self._events(), self.seen)]


def wait_statefulset_ready(
    apps: client.AppsV1Api, namespace: str, name: str, timeout_s: float
) -> Any:
    return wait_for(
        apps.list_namespaced_stateful_set,
        namespace,
        name,
        statefulset_ready,
        f"statefulset/{name} ready",
        timeout_s,
        PodTroubles(client.CoreV1Api(apps.api_client), namespace),
    )


def wait_rolled_out(apps: client.AppsV1Api, namespace: str, name: str, timeout_s: float) -> Any:
    return wait_for(
        apps.list_namespaced_deployment,
        namespace,
        name,
        deployment_rolled_out,
        f"deployment/{name} rolled out",
        timeout_s,
        PodTroubles(client.CoreV1Api(apps.api_client), namespace),
    )


def deployment_rolled_out(deployment: Any) -> bool:
    """The same test `kubectl rollout status` applies."""
    status, spec = deployment.status, deployment.spec
    return (
        (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == spec.replicas
        and (status.replicas or 0) == spec.replicas
        and (status.available_replicas or 0) == spec.replicas
    )


def statefulset_ready(statefulset: Any) -> bool:
    status, spec = statefulset.status, statefulset.spec
    return (
        (status.observed_generation or 0) >= statefulset.metadata.generation
        and (status.ready_replicas or 0) == spec.replicas
        and status.current_revision == status.update_revision
    )


pod_ready = pods.ready  # the name the checks know it by


def read_pod(core: client.CoreV1Api, namespace: str, name: str) -> Any | None:
    """The pod of that name, or None while there is none (a StatefulSet's pod between its
    deletion and its re-creation)."""
    try:
        return core.read_namespaced_pod(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def pod_gone_or_replaced(uid: str) -> Callable[[Any], bool]:
    """True once the pod of that name is a new pod (a StatefulSet keeps the name)."""
    return lambda pod: pod.metadata.uid != uid


def pod_finished(pod: Any) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def run_pod(
    core: client.CoreV1Api, namespace: str, pod: client.V1Pod, timeout_s: float
) -> tuple[str, str]:
    """Run a pod to completion: its phase (Succeeded, Failed) and its log. The pod is
    deleted whatever happened; the log is read raw, as in exec_output."""
    name = pod.metadata.name
    core.create_namespaced_pod(namespace, pod)
    try:
        finished = wait_for(
            core.list_namespaced_pod,
            namespace,
            name,
            pod_finished,
            f"pod/{name} finished",
            timeout_s,
        )
        log = core.read_namespaced_pod_log(name, namespace, _preload_content=False)
        return finished.status.phase, log.data.decode()
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
