"""`purge` removes what the harness did and only that, and a second purge finds nothing.

The decisions are tested on `Survey`s of machines in given states (the engine, the images,
apt's answers); the removals themselves on real files in a scratch directory: a record of
host changes, daemon.json, the wrapper, a cache with a read-only Go module cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import pytest

from harness import names
from harness.cluster import __main__ as cli
from harness.cluster import purge
from harness.cluster.kindcluster import marker
from harness.cluster.purge import Image, Packages, Places, Survey
from harness.host import engine, machine
from harness.steps import HarnessError

HARNESS_DAEMON_JSON = {
    "runtimes": {engine.RUNTIME_NAME: {"path": str(engine.RUNTIME_PATH)}},
    "default-runtime": engine.RUNTIME_NAME,
}


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    """Every place purge touches, under tmp_path (as the modules that write them name them)."""
    monkeypatch.setattr(machine, "HOST_CHANGES", tmp_path / "var/lib/pg-gateway/changes.json")
    monkeypatch.setattr(engine, "DAEMON_JSON", tmp_path / "etc/docker/daemon.json")
    monkeypatch.setattr(engine, "DOCKERD_LOG", tmp_path / "var/log/dockerd.log")
    state = (tmp_path / "var/lib/docker", tmp_path / "var/lib/containerd", tmp_path / "etc/docker")
    monkeypatch.setattr(purge, "DOCKER_STATE", state)
    return Places()


def harness_was_here(places: Places, **record: object) -> Path:
    """What a first run leaves on a fresh machine, as files: the record, daemon.json, the
    wrapper, the dockerd log, a cache with a read-only Go module cache and the cluster mark."""
    wrapper = places.record.parent.parent / "libexec/pg-gateway" / engine.RUNTIME_NAME
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/bin/sh\n")
    places.daemon_json.parent.mkdir(parents=True)
    places.daemon_json.write_text(json.dumps(HARNESS_DAEMON_JSON))
    places.dockerd_log.parent.mkdir(parents=True)
    places.dockerd_log.write_text("Daemon shutdown complete\n")
    module = places.cache / "go-mod/sigs.k8s.io/kind@v0.30.0"
    module.mkdir(parents=True)
    (module / "go.mod").write_text("module sigs.k8s.io/kind\n")
    for path in (module / "go.mod", module, module.parent, places.cache / "go-mod"):
        path.chmod(0o444 if path.is_file() else 0o555)  # as Go leaves its module cache
    (places.cache / "go-build").mkdir()
    marker().parent.mkdir(parents=True)
    marker().write_text("node:test\n")
    places.record.parent.mkdir(parents=True)
    places.record.write_text(
        json.dumps(
            {
                "daemon_json_before": None,
                "runtime_wrapper": str(wrapper),
                "created_dirs": [str(wrapper.parent), str(places.daemon_json.parent)],
                "dockerd": {"pid": 1, "start_time": "0"},
                **record,
            }
        )
    )
    return wrapper


def verdicts(places: Places, survey: Survey) -> dict[str, str]:
    return {item.thing: item.verb for item in purge.plan(places, survey)}


def carry_out(places: Places, survey: Survey, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Purge as a machine with no engine and no apt: only files are touched."""
    purge.run(purge.plan(places, survey), dry_run=False)
    return capsys.readouterr().out.splitlines()


def test_without_an_engine_purge_removes_the_files_and_a_second_purge_finds_nothing(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    wrapper = harness_was_here(places, apt_packages=[])
    marker().unlink()  # no cluster left to delete
    lines = carry_out(places, purge.read_files(places), capsys)
    assert f"remove {places.daemon_json}: did not exist before the harness" in lines
    assert not places.cache.exists()  # read-only go-mod included
    assert not places.daemon_json.exists()
    assert not places.daemon_json.parent.exists()  # the harness made /etc/docker
    assert not wrapper.exists() and not wrapper.parent.exists()
    assert not places.dockerd_log.exists()
    assert not places.record.exists() and not places.record.parent.exists()
    again = carry_out(places, purge.read_files(places), capsys)
    assert again[-1] == "nothing to purge: the harness left nothing here that it can remove"
    assert (
        f"gone   {places.record}: the harness changed nothing on this host, or purge undid it"
        in again
    )


def test_what_an_earlier_removal_took_is_no_error(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen on a real purge: `kind delete cluster` deleted the kubeconfig it wrote, and the
    cache entry's removal then stopped the purge (FileNotFoundError) before the rest."""
    harness_was_here(places, apt_packages=[])
    marker().unlink()
    kubeconfig = places.cache / "kubeconfig-pg-gateway.yaml"
    kubeconfig.write_text("clusters: []\n")
    survey = purge.read_files(places)
    kubeconfig.unlink()  # taken meanwhile, as kind takes it
    places.dockerd_log.unlink()
    lines = carry_out(places, survey, capsys)
    assert f"remove {kubeconfig}: the cluster's kubeconfig" in lines
    assert not places.cache.exists() and not places.record.exists()  # the rest was done


def test_a_read_only_go_module_cache_is_removed_by_an_unprivileged_user() -> None:
    """Root may delete inside read-only directories anyway; a user may not: check as one."""
    root = Path(tempfile.mkdtemp(prefix="purge-go-mod-"))
    try:
        module = root / "go-mod" / "example.com" / "m@v1.0.0"
        module.mkdir(parents=True)
        (module / "go.mod").write_text("module example.com/m\n")
        for path in (module / "go.mod", module, module.parent, root / "go-mod"):
            if os.geteuid() == 0:
                os.chown(path, 65534, 65534)
            path.chmod(0o444 if path.is_file() else 0o555)
        root.chmod(0o777)
        pid = os.fork()
        if pid == 0:  # the child: become nobody when root, remove, report by exit status
            code = 1
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                purge.remove_tree(root / "go-mod")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not (root / "go-mod").exists()
    finally:
        purge.remove_tree(root)


def test_a_tree_that_is_a_mount_point_is_emptied_and_kept(monkeypatch, tmp_path) -> None:
    """Machines with /var/lib/docker on a disk of its own: the purge used to refuse it."""
    mounted = tmp_path / "docker"
    (mounted / "overlay2" / "l").mkdir(parents=True)
    (mounted / "engine-id").write_text("x\n")
    monkeypatch.setattr(purge, "_mounts", lambda: [Path("/"), mounted])
    purge.remove_tree(mounted)
    assert mounted.is_dir()
    assert list(mounted.iterdir()) == []


def test_a_tree_with_a_mount_inside_is_refused(monkeypatch, tmp_path) -> None:
    (tmp_path / "docker" / "volumes" / "v").mkdir(parents=True)
    monkeypatch.setattr(purge, "_mounts", lambda: [Path("/"), tmp_path / "docker" / "volumes"])
    with pytest.raises(HarnessError, match="has mounts inside"):
        purge.remove_tree(tmp_path / "docker")
    assert (tmp_path / "docker" / "volumes" / "v").is_dir()


def test_a_fresh_machines_first_run_is_undone_in_order(places: Places) -> None:
    """This machine's record: docker.io, debootstrap, busybox-static installed, dockerd
    started, daemon.json written where there was none; an engine answers, the cluster runs."""
    harness_was_here(places, apt_packages=["busybox-static", "debootstrap", "docker.io"])
    for state in places.docker_state[:1]:
        state.mkdir(parents=True)
    found = dataclasses.replace(
        purge.read_files(places),
        engine=True,
        our_dockerd=4269,
        cluster=True,
        images=(
            Image("pg-gateway/kind-node:v1.34.4-abc", labelled=True),
            Image("registry.k8s.io/pause:3.10", labelled=True),
            Image("kindest/kindnetd:v20250512-df8de77b", labelled=True),
            Image("0123456789ab", labelled=True, tagged=False),
            Image("pg-gateway/busybox:bookworm", labelled=False),  # a pulled busybox, retagged
            Image("myapp:1", labelled=True),  # the user's, built FROM a harness image
            Image("registry.k8s.io/etcd:3.6.5-0", labelled=False),  # pulled by the user
            Image("postgres:16", labelled=False),
        ),
        packages=Packages(
            installed=("busybox-static", "debootstrap", "docker.io"),
            pulled_in=("containerd", "runc"),
        ),
    )
    items = purge.plan(places, found)
    lines = [item.line() for item in items]
    order = [item.thing for item in items if item.verb == "remove"]
    assert order[0] == f"kind cluster {names.CLUSTER}"
    assert order.index("dockerd pid 4269") > order.index("image 0123456789ab")
    assert order.index("package docker.io") > order.index("dockerd pid 4269")
    assert order.index(str(places.docker_state[0])) > order.index("package docker.io")
    assert order.index(str(places.record)) > order.index(str(places.cache))
    assert order[-1] == str(places.record.parent)  # emptied by then
    seen = verdicts(places, found)
    for ours in ("pg-gateway/kind-node:v1.34.4-abc", "registry.k8s.io/pause:3.10"):
        assert seen[f"image {ours}"] == "remove"
    assert seen["image pg-gateway/busybox:bookworm"] == "remove"
    assert seen["image myapp:1"] == "keep"
    assert seen["image registry.k8s.io/etcd:3.6.5-0"] == "keep"
    assert "image postgres:16" not in seen
    assert seen["packages containerd, runc"] == "remove"
    assert seen[str(places.daemon_json)] == "remove"
    assert f"remove {places.daemon_json}: did not exist before the harness" in lines


def test_a_cluster_the_tool_did_not_create_and_an_engine_it_did_not_start_stay(
    places: Places,
) -> None:
    harness_was_here(places, apt_packages=["docker.io"])
    marker().unlink()
    places.docker_state[0].mkdir(parents=True)
    found = dataclasses.replace(
        purge.read_files(places), engine=True, our_dockerd=None, cluster=True
    )
    seen = verdicts(places, found)
    assert seen[f"kind cluster {names.CLUSTER}"] == "keep"
    assert seen["the Docker engine"] == "keep"
    assert seen[str(places.docker_state[0])] == "keep"  # a running engine's state


def test_with_no_engine_the_cluster_and_images_go_with_var_lib_docker(places: Places) -> None:
    harness_was_here(places, apt_packages=["docker.io"])
    places.docker_state[0].mkdir(parents=True)
    items = {item.thing: item for item in purge.plan(places, purge.read_files(places))}
    for thing in (f"kind cluster {names.CLUSTER}", "images built by the harness"):
        assert items[thing].verb == "remove" and items[thing].undo is None
    assert items[str(places.docker_state[0])].verb == "remove"


def test_with_no_engine_and_a_users_docker_the_cluster_mark_stays_for_a_later_purge(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    harness_was_here(places, apt_packages=[])
    places.docker_state[0].mkdir(parents=True)
    lines = carry_out(places, purge.read_files(places), capsys)
    assert any(line.startswith(f"skip   kind cluster {names.CLUSTER}: ") for line in lines)
    assert marker().exists()
    assert not (places.cache / "go-mod").exists()
    assert places.docker_state[0].exists()  # docker.io was not the harness's


def test_a_package_whose_purge_would_take_another_with_it_is_kept(places: Places) -> None:
    harness_was_here(places, apt_packages=["docker.io"])
    found = dataclasses.replace(
        purge.read_files(places),
        packages=Packages(installed=("docker.io",), blocked={"docker.io": ("docker-compose",)}),
    )
    item = next(i for i in purge.plan(places, found) if i.thing == "package docker.io")
    assert (item.verb, item.why) == ("keep", "purging it would also remove docker-compose")


def test_daemon_json_loses_only_the_harness_entries() -> None:
    harness = json.dumps(HARNESS_DAEMON_JSON)
    assert purge.restored_daemon_json(harness, None) is None
    before = '{"log-driver": "local", "default-runtime": "runc"}'
    ours = {**json.loads(before), **HARNESS_DAEMON_JSON}
    assert purge.restored_daemon_json(json.dumps(ours), before) == before
    added_since = {**HARNESS_DAEMON_JSON, "debug": True}
    assert json.loads(purge.restored_daemon_json(json.dumps(added_since), None) or "") == {
        "debug": True
    }


def test_apt_simulation_is_read_as_the_packages_it_would_remove() -> None:
    simulation = (
        "NOTE: This is only a simulation!\n"
        "Purg docker.io [20.10.24+dfsg1-1+deb12u1+b6]\n"
        "Purg libfoo:amd64 [1.0]\n"
        "Remv tini [0.19.0-1+b3]\n"
    )
    assert purge.purged_by(simulation) == {"docker.io", "libfoo", "tini"}


def test_dry_run_prints_the_plan_and_changes_nothing(
    places: Places, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real command, asking the real Docker and apt (read-only) about scratch places."""
    harness_was_here(places, apt_packages=["pg-gateway-no-such-package"])
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    assert cli.main(["purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: nothing is changed\n")
    assert f"remove {places.daemon_json}: did not exist before the harness" in out
    assert f"remove {places.cache / 'go-mod'}: Go module cache (read-only files)" in out
    assert "gone   package pg-gateway-no-such-package: not installed" in out
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before
