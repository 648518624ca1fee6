"""A deploy that cannot become ready says why at once: pod states and events -> reasons
(`harness.kube.pods`), the rollout wait that gives up on them, and a failed deploy reported
once for all the checks that needed it."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from kubernetes import client

from harness import kube
from harness.e2e import plugin
from harness.kube import pods

POD = "pg-gateway-7d9f-abcde"
IMAGE = "pg-gateway/gateway:e2e-1a2b3c"


def status(
    *,
    waiting: tuple[str, str] | None = None,
    terminated: tuple[str, int] | None = None,
    last: tuple[str, int] | None = None,
    restarts: int = 0,
    ready: bool = False,
    name: str = "gateway",
) -> client.V1ContainerStatus:
    """A container's status: (reason, message) waiting, (reason, exit code) ended now or
    in its last run."""

    def ended(reason_code: tuple[str, int] | None) -> client.V1ContainerStateTerminated | None:
        if reason_code is None:
            return None
        reason, code = reason_code
        return client.V1ContainerStateTerminated(reason=reason, exit_code=code)

    return client.V1ContainerStatus(
        name=name,
        image=IMAGE,
        image_id="",
        ready=ready,
        restart_count=restarts,
        state=client.V1ContainerState(
            waiting=client.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1])
            if waiting
            else None,
            terminated=ended(terminated),
            running=None if waiting or terminated else client.V1ContainerStateRunning(),
        ),
        last_state=client.V1ContainerState(terminated=ended(last)),
    )


def pod(
    *statuses: client.V1ContainerStatus,
    ready: bool = False,
    deleting: bool = False,
    init: tuple[client.V1ContainerStatus, ...] = (),
    phase: str = "Running",
) -> client.V1Pod:
    def container(name: str, memory: str) -> client.V1Container:
        limits = client.V1ResourceRequirements(limits={"memory": memory, "cpu": "1"})
        return client.V1Container(name=name, resources=limits)

    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=POD, deletion_timestamp="2026-12-03T17:00:00Z" if deleting else None
        ),
        spec=client.V1PodSpec(
            containers=[container("gateway", "16Mi")],
            init_containers=[container("migrate", "32Mi")],
        ),
        status=client.V1PodStatus(
            phase=phase,
            conditions=[client.V1PodCondition(type="Ready", status=str(ready))],
            container_statuses=list(statuses) or None,
            init_container_statuses=list(init) or None,
        ),
    )


def event(reason: str, message: str, count: int = 1, uid: str = "e1", name: str = POD):
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(uid=uid),
        involved_object=client.V1ObjectReference(
            kind="Pod", name=name, field_path="spec.containers{gateway}"
        ),
        reason=reason,
        message=message,
        count=count,
    )


def reasons(*pods_: client.V1Pod, events=(), seen=None) -> list[str]:
    return [str(t) for t in pods.troubles(pods_, events, seen or {})]


CRASH_LOOP = ("CrashLoopBackOff", "back-off 40s restarting failed container=gateway")


def test_oom_killed_names_the_memory_limit() -> None:
    crash_looping = pod(status(waiting=CRASH_LOOP, last=("OOMKilled", 137), restarts=3))
    assert reasons(crash_looping) == [
        f"pod {POD} container gateway: OOMKilled "
        "(exit code 137, memory limit 16Mi, restarted 3 times)"
    ]
    killed_just_now = pod(status(terminated=("OOMKilled", 137)))
    assert reasons(killed_just_now) == [
        f"pod {POD} container gateway: OOMKilled (exit code 137, memory limit 16Mi)"
    ]


def test_an_init_container_killed_for_memory_names_its_own_limit() -> None:
    killed = pod(init=(status(name="migrate", terminated=("OOMKilled", 137)),), phase="Pending")
    assert reasons(killed) == [
        f"pod {POD} container migrate: OOMKilled (exit code 137, memory limit 32Mi)"
    ]


def test_a_crash_loop_says_how_its_last_run_ended() -> None:
    looping = pod(status(waiting=CRASH_LOOP, last=("Error", 3), restarts=4))
    assert reasons(looping) == [
        f"pod {POD} container gateway: CrashLoopBackOff (last run ended Error exit code 3, "
        "restarted 4 times, back-off 40s restarting failed container=gateway)"
    ]


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull"])
def test_an_image_that_cannot_be_pulled_is_named(reason: str) -> None:
    message = f'Back-off pulling image "{IMAGE}"\nsecond line'
    assert reasons(pod(status(waiting=(reason, message)))) == [
        f"pod {POD} container gateway: {reason} (image {IMAGE}, {message.splitlines()[0]})"
    ]


def test_a_missing_secret_key_is_named() -> None:
    message = "couldn't find key api-tokens in Secret pgw/pg-gateway-secrets"
    stuck = pod(status(waiting=("CreateContainerConfigError", message)))
    assert reasons(stuck) == [
        f"pod {POD} container gateway: CreateContainerConfigError ({message})"
    ]


@pytest.mark.parametrize(
    "healthy",
    [
        pod(status(waiting=("ContainerCreating", ""))),
        pod(status(), ready=False),  # running, not ready yet: the wait goes on
        pod(status(ready=True, last=("OOMKilled", 137), restarts=1), ready=True),  # recovered
        pod(status(waiting=CRASH_LOOP, last=("OOMKilled", 137)), deleting=True),  # going anyway
        pod(phase="Pending"),  # not scheduled yet
    ],
    ids=["creating", "starting", "recovered-from-oom", "being-deleted", "pending"],
)
def test_what_may_still_become_ready_is_no_trouble(healthy: client.V1Pod) -> None:
    assert reasons(healthy) == []


def test_a_container_restarted_for_a_failing_liveness_probe() -> None:
    killed = event("Killing", "Container gateway failed liveness probe, will be restarted")
    assert reasons(pod(status()), events=[killed]) == [
        f"pod {POD} container gateway: probe failing "
        "(Container gateway failed liveness probe, will be restarted)"
    ]
    # The same kill, seen before the wait began, is not this rollout's.
    assert reasons(pod(status()), events=[killed], seen={"e1": 1}) == []
    stopped = event("Killing", "Stopping container gateway")  # an ordinary deletion
    assert reasons(pod(status()), events=[stopped]) == []


def test_a_readiness_probe_failing_while_the_wait_watches() -> None:
    message = "Readiness probe failed: HTTP probe failed with statuscode: 503"
    failing = event("Unhealthy", message, count=14)
    assert reasons(pod(status()), events=[failing], seen={"e1": 4}) == [
        f"pod {POD} container gateway: readiness probe failing (14 times: {message})"
    ]
    assert reasons(pod(status()), events=[failing], seen={"e1": 5}) == []  # 9 while waiting
    ready = pod(status(ready=True), ready=True)
    assert reasons(ready, events=[failing]) == []
    other = event("Unhealthy", message, count=14, name="postgres-0")
    assert reasons(pod(status()), events=[other]) == []


def test_not_ready_reason_for_the_smoke_checks() -> None:
    looping = pod(status(waiting=CRASH_LOOP, last=("OOMKilled", 137), restarts=2))
    assert pods.not_ready_reason(looping) == (
        f"pod {POD} container gateway: OOMKilled (exit code 137, memory limit 16Mi, "
        "restarted 2 times)"
    )
    once = pod(status(waiting=CRASH_LOOP, last=("Error", 1), restarts=1))
    assert pods.not_ready_reason(once) == (
        f"pod {POD} container gateway: CrashLoopBackOff (last run ended Error exit code 1, "
        "restarted 1 time, back-off 40s restarting failed container=gateway)"
    )
    assert pods.not_ready_reason(pod(status(waiting=("ContainerCreating", "")))) == (
        f"{POD} (ContainerCreating)"
    )
    assert pods.not_ready_reason(pod(phase="Pending")) == f"{POD} (Pending)"


class _OneEventWatch:
    """A watch that sees the Deployment once, not rolled out, then times out."""

    def __init__(self) -> None:
        self.deployment = SimpleNamespace(status=SimpleNamespace(ready_replicas=0))

    def stream(self, *_args: object, **_kwargs: object):
        yield {"type": "ADDED", "object": self.deployment}

    def stop(self) -> None:
        """Nothing to stop."""


def test_the_wait_gives_up_at_once_on_a_trouble(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube.watch, "Watch", _OneEventWatch)
    started = time.monotonic()
    with pytest.raises(kube.CannotBecomeReady) as raised:
        kube.wait_for(
            lambda: None,
            "ns",
            "pg-gateway",
            lambda _deployment: False,
            "deployment/pg-gateway rolled out",
            30,
            lambda _deployment: [f"pod {POD} container gateway: OOMKilled"],
        )
    assert time.monotonic() - started < 5
    assert raised.value.troubles == [f"pod {POD} container gateway: OOMKilled"]
    assert str(raised.value).startswith("deployment/pg-gateway rolled out: cannot happen")


def test_a_failed_deploy_is_reported_in_full_once() -> None:
    config = SimpleNamespace(stash=pytest.Stash())
    failure = RuntimeError("step 'deploy' failed: deployment/pg-gateway rolled out: cannot happen")

    def report(nodeid: str) -> pytest.TestReport:
        return pytest.TestReport(nodeid, ("t.py", 1, nodeid), {}, "failed", "full text", "setup")

    first, second = report("t.py::a"), report("t.py::b")
    plugin._report_once(config, first, failure)  # type: ignore[arg-type]
    plugin._report_once(config, second, failure)  # type: ignore[arg-type]
    assert first.longrepr == "full text"
    assert second.longrepr == (
        "not tried again: the same failure as at the setup of t.py::a, which says why"
    )
    other = report("t.py::c")
    plugin._report_once(config, other, RuntimeError("another fixture"))  # type: ignore[arg-type]
    assert other.longrepr == "full text"
