"""`harness.e2e.replicated.streams_from` reads what Patroni writes into each member's pod
(the `status` annotation): a member has rejoined only once it streams on the primary's
timeline, not when its role label says replica."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.e2e.replicated import streams_from

PRIMARY = {"role": "primary", "state": "running", "timeline": 3}
STREAMING = {"role": "replica", "state": "running", "replication_state": "streaming", "timeline": 3}


class Pods:
    """The part of CoreV1Api streams_from calls: the member pods with these annotations."""

    def __init__(self, statuses: dict[str, dict | None]) -> None:
        self._pods = [
            SimpleNamespace(
                metadata=SimpleNamespace(
                    name=name,
                    annotations=None if status is None else {"status": json.dumps(status)},
                )
            )
            for name, status in statuses.items()
        ]

    def list_namespaced_pod(self, _namespace: str, label_selector: str) -> SimpleNamespace:
        assert label_selector == "app.kubernetes.io/name=postgres"
        return SimpleNamespace(items=self._pods)


def test_a_replica_streaming_on_the_primarys_timeline_has_rejoined() -> None:
    core = Pods({"postgres-0": STREAMING, "postgres-1": PRIMARY})
    assert streams_from(core, "ns", "postgres-0", "postgres-1")


@pytest.mark.parametrize(
    "status",
    [
        # a demoted primary running read-only, before Patroni rewinds it: labelled a replica
        {"role": "replica", "state": "running", "timeline": 2},
        STREAMING | {"timeline": 2},  # still on the timeline it had as primary
        {"role": "replica", "state": "stopped"},  # being rewound
        STREAMING | {"state": "starting"},
        None,  # Patroni has written nothing yet
    ],
)
def test_a_member_not_yet_streaming_on_the_primarys_timeline_has_not(status: dict | None) -> None:
    core = Pods({"postgres-0": status, "postgres-1": PRIMARY})
    assert not streams_from(core, "ns", "postgres-0", "postgres-1")


def test_a_primary_that_reported_no_timeline_matches_no_member() -> None:
    core = Pods({"postgres-0": STREAMING | {"timeline": None}, "postgres-1": {"role": "primary"}})
    assert not streams_from(core, "ns", "postgres-0", "postgres-1")
