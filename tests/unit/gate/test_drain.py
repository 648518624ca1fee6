"""`kubectl drain` as the node drain check reads it: each line of its output, the refusals of
a PodDisruptionBudget among them, and the drain run as a logged step.

kubectl is a shell script here that prints what kubectl 1.34 prints for a drain whose first
eviction a budget refuses, so the step runner, the parsing and the marks are the real ones.
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from harness import steps
from harness.e2e.drain import BUDGET_REFUSAL, Event, NodeDrain, parse_line
from harness.steps import StepFailed

NS, POD = "pgw-e2e-1a2b3c4d", "pg-gateway-7d9f8b6c5-x2x9z"
REFUSAL = (
    f'error when evicting pods/"{POD}" -n "{NS}" (will retry after 5s): Cannot evict pod as '
    "it would violate the pod's disruption budget."
)
TIMEOUT = 'unable to drain node "pg-gateway-worker" due to error: global timeout reached: 1m30s'
FORBIDDEN = f'evicting pods/"{POD}" -n "{NS}" (will retry after 5s): pods is forbidden'
OUTPUT = [
    "node/pg-gateway-worker2 cordoned",
    "Warning: ignoring DaemonSet-managed Pods: kube-system/kindnet-abcde, "
    "kube-system/kube-proxy-fghij",
    f"evicting pod {NS}/{POD}",
    REFUSAL,
    f"evicting pod {NS}/{POD}",
    f"pod/{POD} evicted",
    "node/pg-gateway-worker2 drained",
]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("node/pg-gateway-worker cordoned", (Event.CORDONED, "pg-gateway-worker")),
        ("node/pg-gateway-worker already cordoned", (Event.CORDONED, "pg-gateway-worker")),
        (f"evicting pod {NS}/{POD}", (Event.EVICTING, POD)),
        (REFUSAL, (Event.REFUSED, POD)),
        (f"pod/{POD} evicted", (Event.EVICTED, POD)),
        ("node/pg-gateway-worker drained", (Event.DRAINED, "pg-gateway-worker")),
        (f"error: {TIMEOUT}", (Event.FAILED, TIMEOUT)),
        (f"error when {FORBIDDEN}", (Event.FAILED, FORBIDDEN)),
        ("Warning: ignoring DaemonSet-managed Pods: kube-system/kindnet-abcde", None),
        ("There are pending nodes to be drained:", None),
        ("", None),
    ],
)
def test_each_line_of_kubectl_drain_is_read(line: str, expected: tuple[Event, str] | None) -> None:
    assert parse_line(line) == expected


def test_only_the_budgets_answer_counts_as_a_refusal() -> None:
    assert BUDGET_REFUSAL in REFUSAL
    other = REFUSAL.replace("disruption budget", "quota")
    assert parse_line(other) is not None
    assert parse_line(other)[0] is Event.FAILED


def fake_kubectl(tmp_path: Path, lines: list[str], status: int = 0, sleep: float = 0) -> Path:
    script = tmp_path / "kubectl"
    printed = "\n".join(f"printf '%s\\n' {shell_quote(line)}" for line in lines)
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "KUBECONFIG=$KUBECONFIG $*" > "{tmp_path / "argv"}"
            sleep {sleep}
            """
        )
        + printed
        + f"\nexit {status}\n"
    )
    script.chmod(0o755)
    return script


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_a_drain_runs_as_kops_runs_it_and_its_events_are_timed_and_marked(
    tmp_path: Path,
) -> None:
    kubectl = fake_kubectl(tmp_path, OUTPUT)
    ticks = itertools.count()
    marks: list[str] = []
    drain = NodeDrain(
        kubectl, tmp_path / "kubeconfig", "pg-gateway-worker2", lambda: next(ticks), marks.append
    )
    drain.timeout_s = 90
    drain.start()
    assert drain.wait()
    argv = (tmp_path / "argv").read_text().split()
    assert argv == [
        f"KUBECONFIG={tmp_path / 'kubeconfig'}",
        *("drain", "pg-gateway-worker2", "--ignore-daemonsets", "--delete-emptydir-data"),
        "--timeout=90s",
    ]
    assert [e.event for e in drain.events] == [
        Event.CORDONED, Event.EVICTING, Event.REFUSED, Event.EVICTING, Event.EVICTED,
        Event.DRAINED,
    ]  # fmt: skip
    assert [e.line for e in drain.of(Event.REFUSED)] == [REFUSAL]
    times = [e.at_s for e in drain.events]
    assert times == sorted(times) and drain.started_at < times[0] < drain.ended_at
    assert marks[0] == "drain pg-gateway-worker2"
    assert f"pg-gateway-worker2: refused {POD}" in marks
    assert marks[-1] == "drain pg-gateway-worker2 done"
    logs = "".join(p.read_text() for p in (tmp_path / "artifacts" / "logs").glob("*.log"))
    assert "kubectl drain pg-gateway-worker2" in logs
    assert REFUSAL in logs


def test_a_drain_that_does_not_finish_is_not_drained(tmp_path: Path) -> None:
    lines = [*OUTPUT[:4], 'error: unable to drain node "pg-gateway-worker2"']
    drain = NodeDrain(fake_kubectl(tmp_path, lines, status=1), tmp_path, "n", lambda: 0, print)
    drain.start()
    assert not drain.wait()
    assert drain.status == 1
    assert len(drain.of(Event.REFUSED)) == 1
    assert drain.of(Event.FAILED)


def test_follow_hands_on_each_line_and_a_timeout_fails_the_step(tmp_path: Path) -> None:
    seen: list[str] = []
    with steps.step("follow") as current:
        status = current.follow(["sh", "-c", "echo one; echo two >&2; exit 3"], seen.append)
    assert (status, seen) == (3, ["one", "two"])
    with pytest.raises(StepFailed, match=r"timed out after 0\.5s"), steps.step("slow") as current:
        current.follow(["sleep", "30"], seen.append, timeout=0.5)
