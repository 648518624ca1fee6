"""A real `kubectl drain` of a node, as kops runs it, watched line by line.

`NodeDrain` runs `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data` in a thread,
through the harness's step runner (logged to its step's log like every other command), and
turns each line kubectl prints into a `DrainEvent`: the cordon, each eviction asked for, each
refusal by a PodDisruptionBudget (kubectl retries those every 5 s), each pod evicted, the end.
Every event is also a mark of the measurement the drain runs under, so it lands in the
timeline beside the requests and the replica counts. `uncordon()` undoes the cordon.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from kubernetes import client

from harness.cluster.shape import CONTROL_PLANE_LABEL
from harness.steps import HarnessError, step

DRAIN_FLAGS = ("--ignore-daemonsets", "--delete-emptydir-data")
T = TypeVar("T")
# What the Eviction API answers (429) when a PodDisruptionBudget allows no disruption now.
BUDGET_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget"


class Event(StrEnum):
    CORDONED = "cordoned"
    EVICTING = "evicting"
    REFUSED = "refused"  # by a PodDisruptionBudget, for now: kubectl retries
    EVICTED = "evicted"
    DRAINED = "drained"
    FAILED = "failed"  # any other `error:` line (a timeout, an eviction kubectl gave up on)


_PATTERNS = (
    (Event.CORDONED, re.compile(r"^node/(?P<name>\S+) (?:already )?cordoned$")),
    (Event.EVICTING, re.compile(r"^evicting pod (?:(?P<namespace>[^/\s]+)/)?(?P<name>\S+)$")),
    (
        Event.REFUSED,
        re.compile(
            r'^error when evicting pods/"(?P<name>[^"]+)" -n "(?P<namespace>[^"]+)" '
            r"\(will retry after \S+\): " + re.escape(BUDGET_REFUSAL)
        ),
    ),
    (Event.EVICTED, re.compile(r"^pod/(?P<name>\S+) evicted$")),
    (Event.DRAINED, re.compile(r"^node/(?P<name>\S+) drained$")),
    (Event.FAILED, re.compile(r"^error(?::| when)\s*(?P<name>.*)$")),
)


@dataclass(frozen=True)
class DrainEvent:
    at_s: float  # on the measurement's clock
    event: Event
    name: str  # the pod's, or the node's for cordoned and drained; the message for failed
    line: str  # as kubectl printed it


def parse_line(line: str) -> tuple[Event, str] | None:
    """What one line of `kubectl drain` output says, or None for anything else (warnings)."""
    text = line.strip()
    for event, pattern in _PATTERNS:
        found = pattern.match(text)
        if found:
            return event, found.group("name")
    return None


@dataclass
class NodeDrain:
    """`kubectl drain` of `node` in a thread; its events, timed on `clock`, marked by `mark`."""

    kubectl: Path
    kubeconfig: Path
    node: str
    clock: Callable[[], float]
    mark: Callable[[str], None]
    timeout_s: float = 120.0
    events: list[DrainEvent] = field(default_factory=list)
    status: int | None = None
    error: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    _thread: threading.Thread | None = None

    def argv(self) -> list[str]:
        timeout = f"--timeout={int(self.timeout_s)}s"
        return [str(self.kubectl), "drain", self.node, *DRAIN_FLAGS, timeout]

    def start(self) -> None:
        self.started_at = self.clock()
        self.mark(f"drain {self.node}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        env = {"KUBECONFIG": str(self.kubeconfig)}
        try:
            with step(f"kubectl drain {self.node}") as current:
                # kubectl's own --timeout bounds the drain; the step's is the backstop.
                self.status = current.follow(
                    self.argv(), self._on_line, env=env, timeout=self.timeout_s + 30
                )
        except HarnessError as exc:
            self.error = str(exc)
        finally:
            self.ended_at = self.clock()

    def _on_line(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        event, name = parsed
        self.events.append(DrainEvent(round(self.clock(), 4), event, name, line))
        if event is Event.DRAINED:
            self.mark(f"drain {self.node} done")
        elif event is not Event.FAILED:
            self.mark(f"{self.node}: {event} {name}")

    def wait(self) -> bool:
        """Until kubectl has ended; True when the node was drained."""
        if self._thread is not None:
            self._thread.join(self.timeout_s + 60)
        return self.drained

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def drained(self) -> bool:
        return self.status == 0 and any(e.event is Event.DRAINED for e in self.events)

    @property
    def duration_s(self) -> float:
        return (self.ended_at or self.clock()) - self.started_at

    def of(self, event: Event) -> list[DrainEvent]:
        return [e for e in self.events if e.event is event]


def evict(core: client.CoreV1Api, namespace: str, pod: str) -> bool:
    """Ask for an eviction as kubectl drain does; False when the budget refuses it for now."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
    try:
        core.create_namespaced_pod_eviction(pod, namespace, body)
    except client.ApiException as error:
        if error.status == 429:  # TooManyRequests: the budget's answer
            return False
        raise
    return True


def worker_nodes(core: client.CoreV1Api) -> list[str]:
    """The nodes without the control-plane label, sorted: those the drain checks drain."""
    nodes = core.list_node().items
    labelled = [(node.metadata.name, node.metadata.labels or {}) for node in nodes]
    return sorted(name for name, labels in labelled if CONTROL_PLANE_LABEL not in labels)


def uncordon(kubectl: Path, kubeconfig: Path, node: str) -> None:
    """`kubectl uncordon NODE`, as a logged step."""
    with step(f"kubectl uncordon {node}") as current:
        current.run([kubectl, "uncordon", node], env={"KUBECONFIG": str(kubeconfig)}, timeout=60)


def wait_until(condition: Callable[[], T], timeout_s: float, interval_s: float = 0.2) -> T | None:
    """Poll `condition` until it answers something truthy (returned), or None at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = condition()
        if answer:
            return answer
        time.sleep(interval_s)
    return None
