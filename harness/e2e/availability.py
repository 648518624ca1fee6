"""Measured availability: a steady client load plus a watch on the Deployment.

`LoadProbe` keeps several clients sending queries at a fixed total rate and records every
request; each request opens a new connection, so it is routed by the Service like a new
client would be (a kept-alive connection would pin one pod and measure that pod instead).
`ReplicaWatch` records the Deployment's status from a watch, not from polling sleeps.
"""

from __future__ import annotations

import csv
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch


@dataclass(frozen=True)
class Sample:
    at_s: float
    client: int
    status: int | None
    latency_ms: float
    error: str = ""


@dataclass
class LoadProbe:
    """`clients` threads sharing `rate_per_s` requests per second of `POST /query`."""

    host: str
    port: int
    token: str
    clients: int = 4
    rate_per_s: float = 40.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    origin: float = 0.0  # time.monotonic() at start(); sample times are relative to it

    def start(self) -> None:
        self.origin = time.monotonic()
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _request(self) -> tuple[int | None, str]:
        body = json.dumps({"query": "select 1 as ok"})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request("POST", "/query", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status == 200 and json.loads(payload) != {"result": [{"ok": 1}]}:
                return response.status, f"unexpected body {payload[:100]!r}"
            return response.status, "" if response.status == 200 else payload[:200].decode()
        except (OSError, http.client.HTTPException, ValueError) as error:
            return None, f"{type(error).__name__}: {error}"
        finally:
            connection.close()

    def _run(self, index: int) -> None:
        interval = self.clients / self.rate_per_s
        next_at = time.monotonic() + index * interval / self.clients
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            next_at += interval
            started = time.monotonic()
            status, error = self._request()
            sample = Sample(
                at_s=round(started - self.origin, 4),
                client=index,
                status=status,
                latency_ms=round((time.monotonic() - started) * 1000, 2),
                error=error,
            )
            with self._lock:
                self.samples.append(sample)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200 or s.error]

    def elapsed_s(self) -> float:
        return time.monotonic() - self.origin


@dataclass(frozen=True)
class ReplicaStatus:
    at_s: float
    available: int
    ready: int
    updated: int
    replicas: int


@dataclass
class ReplicaWatch:
    """Every status change of one Deployment, seen through a watch."""

    apps: client.AppsV1Api
    namespace: str
    name: str
    origin: float
    events: list[ReplicaStatus] = field(default_factory=list)
    _watch: watch.Watch = field(default_factory=watch.Watch)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    field_selector=f"metadata.name={self.name}",
                    timeout_seconds=300,
                ):
                    self._record(event["object"])
            except Exception:  # a dropped watch (timeout, API restart) is re-opened
                self._stopped.wait(0.2)

    def _record(self, deployment: Any) -> None:
        status = deployment.status
        self.events.append(
            ReplicaStatus(
                at_s=round(time.monotonic() - self.origin, 4),
                available=status.available_replicas or 0,
                ready=status.ready_replicas or 0,
                updated=status.updated_replicas or 0,
                replicas=status.replicas or 0,
            )
        )

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    @property
    def min_available(self) -> int:
        return min(event.available for event in self.events)


def write_timeline(
    directory: Path,
    probe: LoadProbe,
    replicas: ReplicaWatch,
    marks: list[tuple[float, str]],
) -> tuple[Path, Path]:
    """CSV of every request and replica change, and a PNG plot of both over time."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "rollout-timeline.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["at_s", "kind", "client", "status", "latency_ms", "error", "available"])
        for s in probe.samples:
            writer.writerow([s.at_s, "request", s.client, s.status, s.latency_ms, s.error, ""])
        for r in replicas.events:
            writer.writerow([r.at_s, "replicas", "", "", "", "", r.available])
        for at_s, label in marks:
            writer.writerow([round(at_s, 4), "mark", "", "", "", label, ""])
    png_path = directory / "rollout-timeline.png"
    _plot(png_path, probe, replicas, marks)
    return csv_path, png_path


def _plot(
    path: Path, probe: LoadProbe, replicas: ReplicaWatch, marks: list[tuple[float, str]]
) -> None:
    import matplotlib  # heavy, and only needed for the artifact

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency_axis, replica_axis) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    ok = [s for s in probe.samples if s.status == 200 and not s.error]
    failed = [s for s in probe.samples if s not in ok]
    latency_axis.scatter([s.at_s for s in ok], [s.latency_ms for s in ok], s=3, label="200")
    latency_axis.scatter(
        [s.at_s for s in failed], [s.latency_ms for s in failed], s=12, c="red", label="failed"
    )
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.set_yscale("log")
    latency_axis.legend(loc="upper right")
    latency_axis.set_title(f"{len(probe.samples)} requests, {len(failed)} failed")
    replica_axis.step(
        [r.at_s for r in replicas.events], [r.available for r in replicas.events], where="post"
    )
    replica_axis.set_ylabel("availableReplicas")
    replica_axis.set_xlabel("seconds")
    replica_axis.set_ylim(bottom=0)
    for at_s, label in marks:
        finished = label.endswith(" done")
        for axis in (latency_axis, replica_axis):
            axis.axvline(at_s, color="green" if finished else "grey", linestyle=":", linewidth=0.8)
        if not finished:  # a rollout's end and the next one's start nearly coincide
            replica_axis.annotate(label, (at_s, 0.1), rotation=90, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
