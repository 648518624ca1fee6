"""Check 3b: every commit the gateway acknowledged survives PostgreSQL killed outright under
write load, and the server runs with the settings that make a commit durable.

The deletion check (test_durability.py) stops PostgreSQL gracefully, which flushes
everything, so it cannot see a commit acknowledged before it was durable. Here writers insert
unique ids through the NodePort while every PostgreSQL process of the pod is sent SIGKILL
from its node (as an OOM kill or a crash would end them); once PostgreSQL is back, every id
answered 200 must be in the table. Defects this exists to catch: the gateway acknowledging a
commit PostgreSQL has not made durable (its connections not pinning `synchronous_commit = on`,
so a login's or database's `off` reaches them), data on a volume that does not outlive the
container.

A setting that only an operating system crash exposes cannot be seen by any kill on kind:
the node's page cache outlives every process, so a write PostgreSQL never flushed survives
anyway (`fsync = off`, `full_page_writes = off`). Those, and the server's own
`synchronous_commit` (what every other client of the server gets), are read from PostgreSQL
itself by the superuser: the second check.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import requests

from harness import names
from harness.e2e.kill import kill_pod_processes
from harness.e2e.writers import Writers

KILL_AFTER_S = 3.0
WRITE_ON_AFTER_RECOVERY_S = 1.0
RECOVERY_TIMEOUT_S = 180.0
# What a durable commit rests on, as the server runs (not as a session may change it), and
# the values that acknowledge a commit a crash may lose.
NOT_DURABLE = {
    "fsync": {"off"},
    "full_page_writes": {"off"},
    "synchronous_commit": {"off", "local"},
}


def started_at(deployment) -> str | None:
    """When the serving PostgreSQL started; None while nothing answers it (a 503, or no
    connection through the NodePort while readiness takes the pods out and back)."""
    try:
        response = deployment.query("select pg_postmaster_start_time()::text as t")
    except requests.RequestException:
        return None
    return response.json()["result"][0]["t"] if response.status_code == 200 else None


def kill_postgres(deployment) -> int:
    """SIGKILL to every PostgreSQL process of the pod; how many were killed."""
    return kill_pod_processes(
        deployment.core, deployment.namespace, names.POSTGRES_POD, (names.POSTGRES,)
    )


def test_acknowledged_commits_survive_a_hard_kill(deployment) -> None:
    assert deployment.query("create table hard_kill (id bigint primary key)").ok
    before = started_at(deployment)
    with Writers(deployment, "hard_kill") as writers:
        time.sleep(KILL_AFTER_S)
        killed = kill_postgres(deployment)
        killed_at = time.monotonic()
        assert killed > 0, "no process of the PostgreSQL pod was found on its node"
        while started_at(deployment) in (None, before):
            assert time.monotonic() - killed_at < RECOVERY_TIMEOUT_S, "PostgreSQL never came back"
            time.sleep(0.5)
        recovered_s = time.monotonic() - killed_at
        time.sleep(WRITE_ON_AFTER_RECOVERY_S)
    acknowledged = writers.acknowledged()
    answers = Counter(str(status) for status in writers.answers.values())
    present, lost = writers.lost()
    print(
        f"\nhard kill: {killed} PostgreSQL processes killed, serving again after "
        f"{recovered_s:.1f} s; answers {dict(answers)}; {len(acknowledged)} acknowledged, "
        f"{present} present, {len(lost)} acknowledged and lost"
    )
    assert "500" not in answers, "a request answered 500 while PostgreSQL was killed"
    assert answers["200"] > 0 and len(answers) > 1, "the kill did not fall under the write load"
    assert not lost, f"acknowledged commits lost by a kill: {lost[:20]}"


def server_settings(deployment) -> dict[str, str]:
    """The settings as the server runs, asked by the superuser over the pod's local socket."""
    query = (
        "select json_object_agg(name, setting) from pg_settings where name in "
        f"({', '.join(repr(name) for name in NOT_DURABLE)})"
    )
    output = deployment.superuser_sql("postgres", query)
    return json.loads(output.strip().splitlines()[-1])


def test_postgres_runs_with_the_settings_a_durable_commit_needs(deployment) -> None:
    settings = server_settings(deployment)
    print(f"\ndurable settings: {settings}")
    weakened = {name: value for name, value in settings.items() if value in NOT_DURABLE[name]}
    assert set(settings) == set(NOT_DURABLE), settings
    assert not weakened, (
        f"PostgreSQL acknowledges commits that a crash may lose: {weakened} "
        "(set in the StatefulSet's args or postgresql.conf)"
    )
