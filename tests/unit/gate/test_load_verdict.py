"""The availability checks' verdict when the load falls behind: a failed request fails the
check at any rate; a load far below its asked rate with none failed is inconclusive (a busy
runner, not the deployment), reported apart and with an exit status of its own."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.e2e import plugin
from harness.e2e.availability import (
    MIN_RATE_SHARE,
    ClientKind,
    Clients,
    Inconclusive,
    LoadProbe,
    Sample,
)
from harness.selftest import run


def probe_with(requests: int, failed: int = 0, seconds: float = 10.0) -> LoadProbe:
    """A stopped probe that made `requests` in `seconds` of the 200/s it asked."""
    clients = (Clients(ClientKind.KEEP_ALIVE, 8, 25.0),)
    probe = LoadProbe("127.0.0.1", 31234, "token-not-used-here", clients, origin=100.0)
    probe.stopped = 100.0 + seconds
    probe.samples = [
        Sample(i / 100, ClientKind.KEEP_ALIVE, 0, 1, None if i < failed else 200, 1.0)
        for i in range(requests)
    ]
    return probe


def test_a_load_far_behind_its_rate_with_nothing_failed_is_inconclusive() -> None:
    probe = probe_with(590)  # 59/s of 200, as on the busy runner of the issue
    with pytest.raises(Inconclusive) as raised:
        probe.require_rate()
    assert str(raised.value).startswith(
        "inconclusive: the load reached 59/s of 200/s asked (less than 50%) and no request failed"
    )


def test_a_load_near_its_rate_judges() -> None:
    probe_with(int(200 * MIN_RATE_SHARE * 10)).require_rate()  # exactly half: judged
    probe_with(1850).require_rate()


def test_a_failed_request_is_a_failure_at_any_rate() -> None:
    probe = probe_with(590, failed=3)
    probe.require_rate()  # no verdict of its own: the failures' assertion fails the check
    assert len(probe.failures) == 3


def test_the_rate_is_the_loads_even_when_read_later() -> None:
    probe = probe_with(1000)
    assert probe.elapsed_s() == 10.0  # stopped: later reads (after plotting) change nothing
    assert probe.reached_per_s() == 100.0


def finish(failed: set[str], inconclusive: dict[str, str]) -> int:
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[plugin.FAILED_KEY] = failed
    config.stash[plugin.INCONCLUSIVE_KEY] = inconclusive
    session = SimpleNamespace(
        config=config, stash=pytest.Stash(), exitstatus=pytest.ExitCode.TESTS_FAILED
    )
    plugin.pytest_sessionfinish(session)  # type: ignore[arg-type]
    return session.exitstatus


def test_only_inconclusive_checks_give_their_own_exit_status() -> None:
    verdict = {"t.py::rollouts": "inconclusive: the load reached 59/s of 200/s"}
    assert finish({"t.py::rollouts"}, verdict) == plugin.INCONCLUSIVE_EXIT
    assert finish({"t.py::rollouts", "t.py::durability"}, verdict) == 1  # a real failure too
    assert finish({"t.py::durability"}, {}) == 1


def test_the_self_test_counts_no_inconclusive_check_as_a_catch() -> None:
    outcomes = {"a.py::rollouts": "inconclusive: the load reached 59/s of 200/s", "b.py::x": ""}
    result = run.Result("no-drain", "d", ("a.py::rollouts",), outcomes)
    assert result.failed == {} and result.caught_by == ""
    assert result.inconclusive == ["a.py::rollouts"]
