"""Measured availability: a client load as real clients make it, plus a watch on the Deployment.

`LoadProbe` runs several kinds of clients, each at a fixed rate, and records every request:
- keep-alive clients hold one connection and reuse it, as a requests.Session, Go's
  http.Client or a JDBC-style pool does; such a connection is pinned to one pod, so they see
  what happens to connections open to a pod that terminates;
- new-connection clients open a connection per request (`Connection: close`), so the Service
  routes each request afresh; they see a pod that stops accepting while it is still routed;
- slow-query clients keep a query of a few seconds in flight (a report, a batch), as real
  workloads do; they see a pod that stops before its requests have finished.
All speak HTTP/1.1 through `probeclient` (plain sockets, httptools' parser: a third to a half of
urllib3's CPU), which notices a connection the server closed before it reuses it and retries
nothing: a lost request is counted, never hidden.
`ReplicaWatch` records the Deployment's status from a watch, not from polling sleeps;
`measured_load` runs both around a disruption, `write_timeline` saves what they saw.

A load that fell far behind its asked rate with no request failed says nothing either way:
the runner's CPU set the pace, not the deployment. `LoadProbe.require_rate` then raises
`Inconclusive`, which the e2e plugin reports apart from a failure
(docs/gate.md, "The checks").
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from harness.e2e.probeclient import BadAnswer, ProbeConnection, request_bytes

REQUEST_TIMEOUT_S = 15.0
# Below this share of the asked rate a check cannot judge availability (about 100 of the
# 200 requests/s: the load must still be well above what one pod serves between probes).
MIN_RATE_SHARE = 0.5
INCONCLUSIVE_PREFIX = "inconclusive:"  # how its verdict starts, in reports and JUnit XML
EXPECTED = {"result": [{"ok": 1}]}
TIMELINE_COLUMNS = (
    "at_s",
    "row",  # request, replicas or mark
    "client_kind",
    "client",
    "connection",
    "status",
    "latency_ms",
    "closed",
    "error",  # or the mark's label
    "available",
)


class Inconclusive(Exception):
    """The load fell behind its asked rate and no request failed: the deployment was not
    tested under the load the check needs, so the check neither passes nor fails."""


class ClientKind(StrEnum):
    KEEP_ALIVE = "keep-alive"
    NEW_CONNECTION = "new-connection"
    SLOW_QUERY = "slow-query"


@dataclass(frozen=True)
class Clients:
    """`count` clients of one kind, each starting `rate_per_client` queries per second (or
    the next one as soon as the last answered, when it took longer)."""

    kind: ClientKind
    count: int
    rate_per_client: float
    query_s: float = 0.0  # how long PostgreSQL takes over each query
    timeout_ms: int | None = None  # the request's deadline (the gateway's default if None)

    @property
    def body(self) -> bytes:
        if not self.query_s:
            return json.dumps({"query": "select 1 as ok"}).encode()
        query = {"query": "select 1 as ok from pg_sleep(%s)", "params": [self.query_s]}
        if self.timeout_ms is not None:
            query["timeout_ms"] = self.timeout_ms
        return json.dumps(query).encode()


# About 200 requests/s through the NodePort: enough that a pod which stops accepting while
# it is still routed loses requests within tens of milliseconds, and within what 2 cores
# shared with the cluster sustain. The slow queries outlast a drain cut to a second or two;
# their deadline leaves room to wait for a connection, as a client running a report would
# (with the default 5 s, a busy second of a rollout's CPU answered a 4 s query 504: slower,
# not lost, which these checks are not about).
DEFAULT_CLIENTS = (
    Clients(ClientKind.KEEP_ALIVE, 4, 25.0),
    Clients(ClientKind.NEW_CONNECTION, 4, 25.0),
    Clients(ClientKind.SLOW_QUERY, 4, 0.2, query_s=4.0, timeout_ms=10_000),
)


@dataclass(frozen=True)
class Sample:
    at_s: float
    kind: ClientKind
    client: int
    connection: int  # the client's n-th TCP connection
    status: int | None
    latency_ms: float
    closed: bool = False  # the answer said `Connection: close`
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status != 200 or bool(self.error)


@dataclass(frozen=True)
class KindTotals:
    clients: int
    requests: int
    failed: int
    connections: int


@dataclass
class _Client:
    """One client thread's state: its connection, the request it sends, which connection."""

    spec: Clients
    index: int
    link: ProbeConnection
    request: bytes = field(repr=False)  # it carries the token
    port: int = 0  # local port of the current connection
    connection: int = 0


@dataclass
class LoadProbe:
    """Clients of each kind in `clients` sending `POST /query` through host:port."""

    host: str
    port: int
    # Out of the repr, which a failed assertion's explanation prints: the token (it printed
    # the admin token once) and the thousands of samples.
    token: str = field(repr=False)
    clients: tuple[Clients, ...] = DEFAULT_CLIENTS
    samples: list[Sample] = field(default_factory=list, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    origin: float = 0.0  # time.monotonic() at start(); sample times are relative to it
    stopped: float | None = None  # time.monotonic() at stop(): the load's end

    @property
    def rate_per_s(self) -> float:
        return sum(spec.count * spec.rate_per_client for spec in self.clients)

    def start(self) -> None:
        self.origin = time.monotonic()
        for spec in self.clients:
            for offset in range(spec.count):
                link = ProbeConnection(self.host, self.port, REQUEST_TIMEOUT_S)
                state = _Client(spec, len(self._threads), link, self._request_bytes(spec))
                # Staggered starts, so a kind's requests spread over each interval.
                start_at = self.origin + offset / spec.count / spec.rate_per_client
                thread = threading.Thread(target=self._run, args=(state, start_at), daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        """No request starts after this; those in flight are awaited. The load ends here, not
        when the last slow query is answered (counting that wait, up to a query's 4 s, made
        the rate read about 8 % low)."""
        self._stop.set()
        self.stopped = time.monotonic()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    def _request_bytes(self, spec: Clients) -> bytes:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        if spec.kind is ClientKind.NEW_CONNECTION:
            headers["Connection"] = "close"
        return request_bytes(self.host, self.port, "/query", headers, spec.body)

    @staticmethod
    def _request(state: _Client) -> tuple[int | None, bool, str]:
        """One query; (status, the server closes the connection, error)."""
        try:
            answer = state.link.request(state.request)
        except (OSError, BadAnswer) as error:
            return None, False, f"{type(error).__name__}: {error}"
        if state.link.local_port != state.port:
            state.port = state.link.local_port
            state.connection += 1
        if answer.status != 200:
            return answer.status, answer.closed, answer.body[:200].decode(errors="replace")
        try:
            if json.loads(answer.body) == EXPECTED:
                return answer.status, answer.closed, ""
        except ValueError:
            pass
        return answer.status, answer.closed, f"unexpected body {answer.body[:100]!r}"

    def _run(self, state: _Client, next_at: float) -> None:
        interval = 1 / state.spec.rate_per_client
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at += interval
            started = time.monotonic()
            status, closed, error = self._request(state)
            sample = Sample(
                at_s=round(started - self.origin, 4),
                kind=state.spec.kind,
                client=state.index,
                connection=state.connection,
                status=status,
                latency_ms=round((time.monotonic() - started) * 1000, 2),
                closed=closed,
                error=error,
            )
            with self._lock:
                self.samples.append(sample)
        state.link.close()

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def totals(self) -> dict[ClientKind, KindTotals]:
        """Requests, failures and TCP connections opened, per kind of client."""
        result = {}
        for spec in self.clients:
            samples = [s for s in self.samples if s.kind is spec.kind]
            connections = {(s.client, s.connection) for s in samples}
            failed = sum(s.failed for s in samples)
            result[spec.kind] = KindTotals(spec.count, len(samples), failed, len(connections))
        return result

    def elapsed_s(self) -> float:
        """Since start(), until stop() once stopped (a rate read later is still the load's)."""
        return (self.stopped or time.monotonic()) - self.origin

    def reached_per_s(self) -> float:
        return len(self.samples) / self.elapsed_s()

    def require_rate(self) -> None:
        """A check's last word: when the load reached less than MIN_RATE_SHARE of its rate,
        Inconclusive. Called after the failures were checked (a failed request fails the
        check at any rate), so it also says that none failed."""
        reached = self.reached_per_s()
        if not self.failures and reached < self.rate_per_s * MIN_RATE_SHARE:
            raise Inconclusive(
                f"{INCONCLUSIVE_PREFIX} the load reached {reached:.0f}/s of "
                f"{self.rate_per_s:.0f}/s asked (less than {MIN_RATE_SHARE:.0%}) and no "
                "request failed: this machine "
                "could not make the load, so the deployment was not judged; run it again "
                "where the CPU is not busy"
            )


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
        return min((event.available for event in self.events), default=0)

    @property
    def min_ready(self) -> int:
        return min((event.ready for event in self.events), default=0)


@dataclass
class Measurement:
    """The load and the replica watch around one disruption, and its marked moments."""

    probe: LoadProbe
    replicas: ReplicaWatch
    marks: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, label: str) -> float:
        """Note an event in the timeline; returns its time on the probe's clock."""
        at_s = self.probe.elapsed_s()
        self.marks.append((at_s, label))
        return at_s

    def summary(self) -> str:
        """Per kind of client: requests, failures, connections; and the replicas' low point."""
        duration = self.probe.elapsed_s()
        kinds = "; ".join(
            f"{kind}: {t.clients} clients, {t.requests} requests over {t.connections} "
            f"connections, {t.failed} failed"
            for kind, t in self.probe.totals().items()
        )
        rate = self.probe.reached_per_s()
        return (
            f"{len(self.probe.samples)} requests in {duration:.1f} s ({rate:.0f}/s); {kinds}; "
            f"min availableReplicas {self.replicas.min_available}, "
            f"min readyReplicas {self.replicas.min_ready}"
        )


@contextmanager
def measured_load(
    probe: LoadProbe, apps: client.AppsV1Api, namespace: str, name: str
) -> Iterator[Measurement]:
    """Run the load and watch Deployment `name` for the duration of the block."""
    probe.start()
    replicas = ReplicaWatch(apps, namespace, name, probe.origin)
    replicas.start()
    try:
        yield Measurement(probe, replicas)
    finally:
        probe.stop()
        replicas.stop()


def write_timeline(directory: Path, stem: str, measurement: Measurement) -> tuple[Path, Path]:
    """`<stem>.csv` of every request, replica change and mark, and `<stem>.png` plotting them."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / f"{stem}.csv"
    probe, replicas, marks = measurement.probe, measurement.replicas, measurement.marks
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TIMELINE_COLUMNS)
        for s in probe.samples:
            request = (s.kind, s.client, s.connection, s.status, s.latency_ms, int(s.closed))
            writer.writerow([s.at_s, "request", *request, s.error, ""])
        for r in replicas.events:
            writer.writerow([r.at_s, "replicas", *[""] * 7, r.available])
        for at_s, label in marks:
            writer.writerow([round(at_s, 4), "mark", *[""] * 6, label, ""])
    png_path = directory / f"{stem}.png"
    _plot(png_path, measurement)
    return csv_path, png_path


def _plot(path: Path, measurement: Measurement) -> None:
    import matplotlib  # heavy, and only needed for the artifact

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe, replicas, marks = measurement.probe, measurement.replicas, measurement.marks
    figure, (latency_axis, replica_axis) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    failed = probe.failures
    for kind in probe.totals():
        ok = [s for s in probe.samples if s.kind is kind and not s.failed]
        latency_axis.scatter([s.at_s for s in ok], [s.latency_ms for s in ok], s=3, label=kind)
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
