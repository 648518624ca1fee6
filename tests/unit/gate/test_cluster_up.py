"""`up` runs its ordered actions: which run when, and what a failure tells the user.

The actions' work is replaced by recorders (no Docker, no kind); the runner, the conditions,
the step announcements and the remedies are the real ones.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness import names, steps
from harness.cluster import create, kindcluster
from harness.cluster import shape as cluster_shape
from harness.steps import HarnessError


def record_actions(
    monkeypatch: pytest.MonkeyPatch,
    *,
    exists: bool,
    fail: str | None = None,
    workers: int | None = None,
) -> list[str]:
    """Replace each action's work by a recorder; the cluster exists or not (with `workers`
    workers, else the shape asked for); one may fail. The replacing action deletes it."""
    ran: list[str] = []
    state = {"exists": exists}

    def recorder(action: create.Action) -> create.Action:
        def run(_current: steps.Step, up: create.Up) -> None:
            ran.append(action.name)
            if action.run is create._replace:
                state["exists"] = False
            up.exists, up.node_image = state["exists"], "node:test"
            shape = up.workers if workers is None else workers
            up.nodes = tuple(cluster_shape.node_names(shape)) if up.exists else ()
            if action.name == fail:
                raise HarnessError("it broke")

        return dataclasses.replace(action, run=run)

    monkeypatch.setattr(create, "ACTIONS", tuple(map(recorder, create.ACTIONS)))
    return ran


def test_a_missing_cluster_is_created_from_the_node_image(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = record_actions(monkeypatch, exists=False)
    create.ensure_cluster()
    assert [name.split()[0] for name in ran] == ["Docker", "kind", "node", "create", "system"]
    assert f"==> create kind cluster {names.CLUSTER} (node:test)" in capsys.readouterr().err


def test_an_existing_cluster_is_reused_and_gets_the_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = record_actions(monkeypatch, exists=True)
    create.ensure_cluster(("pg-gateway/gateway:test",))
    assert [name.split()[0] for name in ran] == ["Docker", "kind", "reuse", "system", "load"]


def test_an_existing_cluster_of_another_shape_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = record_actions(monkeypatch, exists=True, workers=0)
    create.ensure_cluster(workers=2)
    assert [name.split()[0] for name in ran] == [
        "Docker", "kind", "replace", "node", "create", "system",
    ]  # fmt: skip


def test_the_replacing_action_deletes_only_a_cluster_this_tool_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deleted: list[str] = []
    monkeypatch.setattr(kindcluster.GateCluster, "delete", lambda self: deleted.append(self.name))
    up = create.Up((), workers=2, exists=True, nodes=(f"{names.CLUSTER}-control-plane",))
    assert up.other_shape
    with steps.step("replace") as current, pytest.raises(HarnessError, match="not created by"):
        create._replace(current, up)
    assert deleted == []
    kindcluster.marker().parent.mkdir(parents=True)
    kindcluster.marker().write_text("node:test\n")
    with steps.step("replace") as current:
        create._replace(current, up)
    assert deleted == [names.CLUSTER]
    assert (up.exists, up.nodes, up.other_shape) == (False, (), False)


def test_the_worker_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = record_actions(monkeypatch, exists=True, workers=0)
    monkeypatch.setenv(cluster_shape.WORKERS_ENV, "0")
    create.ensure_cluster()
    assert "replace" not in [name.split()[0] for name in ran]


def test_a_failed_action_stops_up_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = record_actions(monkeypatch, exists=True, fail="system workloads ready")
    with pytest.raises(HarnessError) as failure:
        create.ensure_cluster(("image",))
    assert ran[-1] == "system workloads ready"
    message = str(failure.value)
    assert message.startswith("step 'system workloads ready' failed: it broke")
    assert f"what to do: `kubectl --kubeconfig {create.kubeconfig_path()} get pods -A`" in message


def test_every_name_and_remedy_names_only_what_up_knows() -> None:
    up = create.Up(("image",))
    for action in create.ACTIONS:
        assert action.name.format_map(vars(up))
        assert action.remedy.format_map(vars(up))


def test_an_inner_step_is_named_in_the_outer_steps_log() -> None:
    with steps.step("outer") as outer:
        with steps.step("inner") as inner:
            assert outer.inner == 1
        assert outer.inner == 0
    assert f"inner step 'inner': {inner.log_path}" in outer.log_path.read_text()
