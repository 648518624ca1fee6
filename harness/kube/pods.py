"""Why pods cannot become ready, read from their status and events: pure functions.

A rollout wait asks these while it waits, so a deployment that can never serve (OOM-killed,
crash-looping, an image that cannot be pulled, a Secret key missing, a probe that keeps
failing) fails at once with each pod, container, reason and the limit or event behind it,
instead of at the wait's timeout with a status dump. The smoke checks name a pod's trouble
with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Waiting reasons the kubelet only leaves by a change of the pod's spec, an image or a Secret.
STUCK_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
OOM_KILLED = "OOMKilled"
# A readiness probe failing this many times while the wait watches (2 s apart in the
# gateway's probe: 20 s) is a pod that is not going to turn ready.
READINESS_FAILURES = 10
PROBE_KILLED = ("failed liveness probe", "failed startup probe")


@dataclass(frozen=True)
class Trouble:
    """One container of one pod that cannot become ready, and why."""

    pod: str
    container: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"pod {self.pod} container {self.container}: {self.reason}{detail}"


def memory_limit(pod: Any, container: str) -> str:
    """The container's memory limit as the spec writes it, or "no memory limit"."""
    specs = [*(pod.spec.init_containers or []), *(pod.spec.containers or [])]
    for spec in specs:
        if spec.name == container:
            limits = (spec.resources and spec.resources.limits) or {}
            return f"memory limit {limits['memory']}" if "memory" in limits else "no memory limit"
    return "no memory limit"


def _ended(terminated: Any) -> str:
    return f"exit code {terminated.exit_code}" if terminated.exit_code is not None else ""


def container_trouble(pod: Any, status: Any) -> Trouble | None:
    """A container that will not become ready by waiting: killed for memory (and not ready
    since), or stuck in a waiting reason of STUCK_WAITING (with what ended its last run, for
    a crash loop)."""
    name = pod.metadata.name
    if status.ready:
        return None
    state, last = status.state, status.last_state
    terminated = (state and state.terminated) or (last and last.terminated)
    count = status.restart_count
    restarts = f"restarted {count} time{'s' if count > 1 else ''}" if count else ""
    if terminated is not None and terminated.reason == OOM_KILLED:
        details = [_ended(terminated), memory_limit(pod, status.name), restarts]
        return Trouble(name, status.name, OOM_KILLED, ", ".join(d for d in details if d))
    waiting = state and state.waiting
    if waiting is None or waiting.reason not in STUCK_WAITING:
        return None
    details = [restarts]
    if terminated is not None:
        details.insert(0, f"last run ended {terminated.reason or ''} {_ended(terminated)}".strip())
    if waiting.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
        details.insert(0, f"image {status.image}")
    if waiting.message:
        details.append(waiting.message.strip().splitlines()[0][:300])
    return Trouble(name, status.name, waiting.reason, ", ".join(d for d in details if d))


def probe_trouble(pod: Any, events: Iterable[Any], seen: Mapping[str, int]) -> list[Trouble]:
    """Probes failing repeatedly, from the pod's events, counted beyond `seen` (event uid ->
    its count when the wait began): the kubelet restarting a container for a failed
    liveness or startup probe, or a readiness probe failing READINESS_FAILURES times while
    the pod is not ready."""
    found = []
    for event in events:
        involved = event.involved_object
        if involved.kind != "Pod" or involved.name != pod.metadata.name:
            continue
        message = (event.message or "").strip()
        container = _container_of(involved.field_path) or "?"
        new = (event.count or 1) - seen.get(event.metadata.uid, 0)
        if event.reason == "Killing" and new > 0 and any(c in message for c in PROBE_KILLED):
            found.append(Trouble(pod.metadata.name, container, "probe failing", message))
        elif (
            event.reason == "Unhealthy"
            and message.startswith("Readiness probe failed")
            and not ready(pod)
            and new >= READINESS_FAILURES
        ):
            detail = f"{event.count} times: {message.splitlines()[0][:300]}"
            found.append(Trouble(pod.metadata.name, container, "readiness probe failing", detail))
    return found


def _container_of(field_path: str | None) -> str | None:
    """`spec.containers{gateway}` -> gateway."""
    if not field_path or "{" not in field_path:
        return None
    return field_path.partition("{")[2].rstrip("}")


def ready(pod: Any) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def troubles(pods: Iterable[Any], events: Iterable[Any], seen: Mapping[str, int]) -> list[Trouble]:
    """Every pod's troubles (pods being deleted are going anyway)."""
    events = list(events)
    found: list[Trouble] = []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        statuses = [
            *(pod.status.init_container_statuses or []),
            *(pod.status.container_statuses or []),
        ]
        found += [t for s in statuses if (t := container_trouble(pod, s)) is not None]
        found += probe_trouble(pod, events, seen)
    return found


def not_ready_reason(pod: Any) -> str:
    """A pod that is not Ready, with why: its trouble, else its first container's waiting or
    ended reason, else its phase (the smoke checks' words)."""
    statuses = pod.status.container_statuses or []
    for status in statuses:
        trouble = container_trouble(pod, status)
        if trouble is not None:
            return str(trouble)
    for status in statuses:
        stuck = status.state.waiting or status.state.terminated
        if stuck and stuck.reason:
            return f"{pod.metadata.name} ({stuck.reason})"
    return f"{pod.metadata.name} ({pod.status.phase})"
