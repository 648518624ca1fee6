"""`scripts/roll-postgres.sh NS` starts only once every member is a primary or a replica (a
member rejoining after a failover is neither for a while, and was left out of the roll), and
switches an outdated primary over only once Patroni names a synchronous standby: in strict
mode a switchover to no standby is refused ("can not find sync_standby"), and a replica the
script has just replaced may have been the standby.

The script runs for real against a stand-in for kubectl (a small Python script reading the
members from a JSON file and logging each call).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import paths
from harness.e2e.replicated import SYNC_STATE

SCRIPT = paths.REPO_ROOT / "scripts" / "roll-postgres.sh"

KUBECTL = """
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = sys.argv[3:]  # after `-n NAMESPACE`
with open(state_path + ".calls", "a") as log:
    log.write(" ".join(args) + "\\n")
pods = state["pods"]
if args[0] == "get" and args[1] in ("pod", "pods"):  # postgres-2 has no role for a while
    state["unlabelled_calls"] -= 1
    if state["unlabelled_calls"] < 0:
        pods["postgres-2"]["role"] = "replica"
if args[:2] == ["get", "statefulset"]:
    print(len(pods) if "replicas" in args[-1] else state["revision"], end="")
elif args[:2] == ["get", "pods"]:
    role = args[args.index("-l") + 1].partition(",role=")[2]
    for name, pod in pods.items():
        if "labels.role" in args[-1]:
            print(name, pod["role"])
        elif role in ("", pod["role"]):
            print(name, pod["revision"])
elif args[:2] == ["get", "pod"]:
    print(pods[args[2]]["role"], end="")
elif args[:2] == ["get", "configmap"]:
    polls = state["sync_standby"]
    print(polls.pop(0) if len(polls) > 1 else polls[0], end="")
elif args[:2] == ["delete", "pod"]:
    pods[args[2]]["revision"] = state["revision"]
elif args[0] == "exec":  # patronictl switchover: the synchronous standby takes the role
    if not state["sync_standby"][0]:
        sys.exit("Error: 412, switchover is not possible: can not find sync_standby")
    pods[args[1]]["role"] = "replica"
    pods[state["sync_standby"][0]]["role"] = "primary"
json.dump(state, open(state_path, "w"))
"""


def roll(
    tmp_path: Path, sync_standby: list[str], unlabelled_calls: int = 0, timeout: str = "10s"
) -> tuple[subprocess.CompletedProcess, list]:
    """roll-postgres.sh with postgres-0 an outdated primary, postgres-1 a current replica and
    postgres-2 an outdated one, which has no role for its first `unlabelled_calls` reads (a
    member rejoining after a failover); `sync_standby`: what Patroni's ConfigMap names at
    each poll (the last one stays)."""
    fake = tmp_path / "kubectl"
    fake.write_text(f"#!{sys.executable}\n{KUBECTL}")
    fake.chmod(0o755)
    state = {
        "revision": "new",
        "pods": {
            "postgres-0": {"role": "primary", "revision": "old"},
            "postgres-1": {"role": "replica", "revision": "new"},
            "postgres-2": {"role": "", "revision": "old"},
        },
        "sync_standby": sync_standby,
        "unlabelled_calls": unlabelled_calls,
    }
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    env = {**os.environ, "KUBECTL": str(fake), "FAKE_STATE": str(state_path), "TIMEOUT": timeout}
    done = subprocess.run(
        [str(SCRIPT), "pgw-try"], capture_output=True, text=True, env=env, timeout=60
    )
    return done, Path(f"{state_path}.calls").read_text().splitlines()


def test_the_switchover_waits_until_patroni_names_a_synchronous_standby(tmp_path) -> None:
    done, calls = roll(tmp_path, ["", "", "postgres-1"])
    assert done.returncode == 0, done.stdout + done.stderr
    polls = [n for n, call in enumerate(calls) if call.startswith(f"get configmap {SYNC_STATE} ")]
    (switchover,) = [n for n, call in enumerate(calls) if "switchover" in call]
    assert len(polls) == 3, calls
    assert polls[-1] < switchover, calls
    assert "every member runs revision new" in done.stdout


def test_no_synchronous_standby_in_time_stops_it_before_any_switchover(tmp_path) -> None:
    done, calls = roll(tmp_path, [""], timeout="2s")
    assert done.returncode == 1
    assert "roll-postgres: no synchronous standby within 2s" in done.stderr
    assert not any("switchover" in call or "postgres-0" in call for call in calls), calls


def test_a_member_without_a_role_is_waited_for_then_rolled(tmp_path) -> None:
    done, _ = roll(tmp_path, ["postgres-1"], unlabelled_calls=1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "roll-postgres: replacing postgres-2" in done.stdout
    assert "every member runs revision new" in done.stdout


def test_a_member_that_never_gets_a_role_stops_it_naming_the_member(tmp_path) -> None:
    done, calls = roll(tmp_path, ["postgres-1"], unlabelled_calls=10**6, timeout="2s")
    assert done.returncode == 1
    assert "members neither primary nor replica within 2s: postgres-2" in done.stderr
    assert not any("switchover" in call or "delete" in call for call in calls), calls
