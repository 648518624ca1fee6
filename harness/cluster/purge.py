"""`purge`: `up` undone; what the harness did to this machine, and nothing else.

The record of host changes (`harness.host.machine`, written by `harness.host.engine` and the
builds) and what the machine shows now (a `Survey`) decide, in `plan()`, what goes and what
stays; `plan()` is pure, so the decisions are tested without Docker or root. `purge --dry-run`
prints the plan; `purge` prints each line as it carries it out, in `up`'s reverse order, where
each removal still has what it needs: kind and the engine for the cluster and the images, the
engine stopped before its packages and state go. A second purge finds nothing left and says so
(docs/operations.md, "Host setup").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import names, paths
from harness.build import docker
from harness.cluster import kindtool
from harness.cluster.kindcluster import GateCluster, marker
from harness.host import engine, machine
from harness.steps import HarnessError, StepFailed, probe, step, within_step

DOCKER_IO = "docker.io"
# The names the harness tags images with: its own, and the ones kubeadm and kind expect
# (docker shows docker.io/kindest/... as kindest/...).
HARNESS_REPOSITORY = "pg-gateway/"
COMPONENT_REPOSITORIES = ("registry.k8s.io/", "kindest/")
CACHE_ENTRIES = {
    "go-mod": "Go module cache (read-only files)",
    "go-build": "Go build cache",
    "go": "Go programs built for the node image",
    "kind": "kind, built with go install",
    "actionlint": "actionlint, built with go install",
    "debootstrap-debs": "debootstrap's .deb cache",
    "pause": "the pause binary",
    "clusters": "marks of the clusters this tool created",
    paths.kubeconfig_path().name: "the cluster's kubeconfig",
}
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


# What docker.io and its dockerd keep: removed only with a docker.io the harness installed.
DOCKER_STATE = (Path("/var/lib/docker"), Path("/var/lib/containerd"), engine.DAEMON_JSON.parent)


@dataclass(frozen=True)
class Places:
    """Where the harness leaves things on the host, read from the modules that put them
    there when a purge starts (so tests point them into a scratch directory)."""

    record: Path = field(default_factory=lambda: machine.HOST_CHANGES)
    daemon_json: Path = field(default_factory=lambda: engine.DAEMON_JSON)
    dockerd_log: Path = field(default_factory=lambda: engine.DOCKERD_LOG)
    docker_state: tuple[Path, ...] = field(default_factory=lambda: DOCKER_STATE)
    cache: Path = field(default_factory=paths.cache_root)


@dataclass(frozen=True)
class Image:
    name: str  # repository:tag, or the ID of an untagged image
    labelled: bool  # carries docker.BUILT_BY_LABEL
    tagged: bool = True


@dataclass(frozen=True)
class Packages:
    """The recorded packages as apt sees them now."""

    installed: tuple[str, ...] = ()  # recorded and still installed
    blocked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # -> what else it takes
    pulled_in: tuple[str, ...] = ()  # installed with them and needed by nothing else


@dataclass(frozen=True)
class Survey:
    """What the machine shows now: the record, the engine, the files."""

    record: dict[str, Any]
    engine: bool = False  # a Docker engine answers
    our_dockerd: int | None = None  # the dockerd the harness started, still running
    cluster: bool = False  # the kind cluster's node container exists (known with an engine)
    marked: bool = False  # the cluster's marker: this tool created it
    images: tuple[Image, ...] = ()
    packages: Packages = field(default_factory=Packages)
    daemon_json: str | None = None
    cache: tuple[str, ...] | None = None  # the cache's entries; None: there is no cache
    existing: frozenset[Path] = frozenset()  # which of the places in the plan exist


@dataclass(frozen=True)
class Item:
    """One line of the plan. `verb` is remove, keep, gone (nothing there) or skip (cannot be
    checked now); `undo` removes it, or is None where a later item takes it along."""

    verb: str
    thing: str
    why: str
    undo: Callable[[], None] | None = None

    def line(self) -> str:
        return f"{self.verb:<6} {self.thing}: {self.why}"


def remove(thing: str, why: str, undo: Callable[[], None] | None = None) -> Item:
    return Item("remove", thing, why, undo)


def keep(thing: str, why: str) -> Item:
    return Item("keep", thing, why)


def gone(thing: str, why: str) -> Item:
    return Item("gone", thing, why)


def skip(thing: str, why: str) -> Item:
    return Item("skip", thing, why)


# -- deciding ------------------------------------------------------------------------------


def plan(places: Places, survey: Survey) -> list[Item]:
    """Everything purge would do, in the order it does it, each with its reason."""
    return [
        *_cluster(places, survey),
        *_images(places, survey),
        *_engine(survey),
        *_daemon_json(places, survey),
        *_wrapper(survey),
        *_packages(survey),
        *_docker_state(places, survey),
        *_dockerd_log(places, survey),
        *_cache(places, survey),
        *_record(places, survey),
        *_directories(places, survey),
    ]


def _docker_io_ours(survey: Survey) -> bool:
    return DOCKER_IO in survey.record.get("apt_packages", [])


def _docker_state_goes(places: Places, survey: Survey) -> bool:
    """Without an engine, the cluster and the images go with /var/lib/docker, if it goes."""
    return places.docker_state[0] in _docker_state_removed(places, survey)


def _cluster(places: Places, survey: Survey) -> list[Item]:
    thing = f"kind cluster {names.CLUSTER}"
    if not survey.engine:
        if _docker_state_goes(places, survey):
            return [
                remove(
                    thing, f"no Docker engine answers; its node goes with {places.docker_state[0]}"
                )
            ]
        if survey.marked:
            return [
                skip(
                    thing,
                    "no Docker engine answers, so it cannot be deleted; its mark stays in the "
                    "cache: start the engine and purge again",
                )
            ]
        return [skip(thing, "not checked: no Docker engine answers")]
    if not survey.cluster:
        return [gone(thing, "no such cluster")]
    if not survey.marked:
        return [keep(thing, "not created by this tool")]
    return [remove(thing, "created by this tool (kind delete cluster)", _delete_cluster)]


def is_harness_image(image: Image) -> bool:
    """Named in the harness's own repository, or built by it (label) under a name the
    harness uses or none: an image someone built on a harness image inherits the label."""
    if image.name.startswith(HARNESS_REPOSITORY):
        return True
    return image.labelled and (not image.tagged or image.name.startswith(COMPONENT_REPOSITORIES))


def _images(places: Places, survey: Survey) -> list[Item]:
    if not survey.engine:
        if _docker_state_goes(places, survey):
            why = f"no Docker engine answers; they go with {places.docker_state[0]}"
            return [remove("images built by the harness", why)]
        return [skip("images built by the harness", "not listed: no Docker engine answers")]
    items = []
    for image in sorted(survey.images, key=lambda image: (not image.tagged, image.name)):
        if is_harness_image(image):
            why = "built by the harness" if image.labelled else "tagged by the harness"
            items.append(remove(f"image {image.name}", why, lambda name=image.name: _rmi(name)))
        elif image.labelled:
            items.append(keep(f"image {image.name}", "built on a harness image, not by it"))
        elif image.name.startswith(COMPONENT_REPOSITORIES):
            items.append(keep(f"image {image.name}", "not built by the harness (no label)"))
    return items or [gone("images built by the harness", "none")]


def _engine(survey: Survey) -> list[Item]:
    if survey.our_dockerd is not None:
        pid = survey.our_dockerd
        why = "started by the harness (that very process: pid and start time)"
        return [remove(f"dockerd pid {pid}", why, lambda: _stop_dockerd(survey.record, pid))]
    if survey.engine:
        return [keep("the Docker engine", "not started by the harness")]
    if "dockerd" in survey.record:
        return [gone("the dockerd the harness started", "no longer running")]
    return []


def restored_daemon_json(current: str, before: str | None) -> str | None:
    """daemon.json without the harness's entries, keeping any added since: `before` itself
    when nothing else changed (None: there was no file)."""
    config = json.loads(current)
    original = json.loads(before) if before else {}
    runtimes = config.get("runtimes", {})
    runtimes.pop(engine.RUNTIME_NAME, None)
    if not runtimes and "runtimes" not in original:
        config.pop("runtimes", None)
    if config.get("default-runtime") == engine.RUNTIME_NAME:
        config.pop("default-runtime")
        if "default-runtime" in original:
            config["default-runtime"] = original["default-runtime"]
    if config == original:
        return before
    return json.dumps(config, indent=2) + "\n"


def _daemon_json(places: Places, survey: Survey) -> list[Item]:
    if "daemon_json_before" not in survey.record:
        return []
    thing = str(places.daemon_json)
    if survey.daemon_json is None:
        return [gone(thing, "no such file")]
    before = survey.record["daemon_json_before"]
    try:
        restored = restored_daemon_json(survey.daemon_json, before)
    except json.JSONDecodeError:
        return [keep(thing, "not JSON any more: remove the harness's runtime from it by hand")]
    if restored == survey.daemon_json:
        return [gone(thing, "holds no entry of the harness")]
    if restored is None:
        return [remove(thing, "did not exist before the harness", _unlink(places.daemon_json))]
    why = "the harness's runtime entries taken out, the rest kept"
    if restored == before:
        why = "restored to what it was before the harness"
    return [remove(thing, why, lambda: places.daemon_json.write_text(restored))]


def _wrapper(survey: Survey) -> list[Item]:
    wrapper = survey.record.get("runtime_wrapper")
    if wrapper is None:
        return []
    path = Path(wrapper)
    if path not in survey.existing:
        return [gone(wrapper, "no such file")]
    return [remove(wrapper, "the runtime wrapper the harness installed", _unlink(path))]


def _packages(survey: Survey) -> list[Item]:
    items = []
    found = survey.packages
    for package in survey.record.get("apt_packages", []):
        thing = f"package {package}"
        if package not in found.installed:
            items.append(gone(thing, "not installed"))
        elif package in found.blocked:
            also = ", ".join(found.blocked[package])
            items.append(keep(thing, f"purging it would also remove {also}"))
        else:
            purge = lambda package=package: _apt_purge([package])  # noqa: E731
            items.append(remove(thing, "installed by the harness (apt-get purge)", purge))
    if found.pulled_in:
        pulled = list(found.pulled_in)
        why = "pulled in by those and needed by nothing else (autoremove)"
        items.append(remove(f"packages {', '.join(pulled)}", why, lambda: _apt_purge(pulled)))
    return items


def _docker_state_removed(places: Places, survey: Survey) -> set[Path]:
    """The docker.io state purge removes: all of it, with a docker.io the harness installed,
    once no engine the harness did not start runs; /etc/docker only if it held no
    daemon.json before the harness."""
    if not _docker_io_ours(survey) or (survey.engine and survey.our_dockerd is None):
        return set()
    removed = set(places.docker_state) & survey.existing
    if survey.record.get("daemon_json_before") is not None:
        removed.discard(places.daemon_json.parent)
    return removed


def _docker_state(places: Places, survey: Survey) -> list[Item]:
    removed = _docker_state_removed(places, survey)
    made = set(created_directories(places, survey.record))
    items = []
    for path in places.docker_state:
        if path not in survey.existing or (path in made and path not in removed):
            continue  # not there, or a directory the harness made: removed once empty
        thing = str(path)
        if path in removed:
            why = f"state of the {DOCKER_IO} the harness installed"
            items.append(remove(thing, why, lambda path=path: remove_tree(path)))
        elif not _docker_io_ours(survey):
            items.append(keep(thing, f"{DOCKER_IO} was not installed by the harness"))
        elif path == places.daemon_json.parent:
            items.append(keep(thing, f"holds the {places.daemon_json.name} from before"))
        else:
            items.append(keep(thing, "a Docker engine the harness did not start is running"))
    return items


def _dockerd_log(places: Places, survey: Survey) -> list[Item]:
    if "dockerd" not in survey.record or places.dockerd_log not in survey.existing:
        return []
    why = "written by the dockerd the harness started"
    return [remove(str(places.dockerd_log), why, _unlink(places.dockerd_log))]


def _cache(places: Places, survey: Survey) -> list[Item]:
    root = places.cache
    if survey.cache is None:
        return [gone(str(root), "no cache")]
    if not _may_delete_tree(root):
        return [keep(str(root), "refusing to delete: PG_GATEWAY_CACHE names a home or root")]
    # A cluster that cannot be deleted now keeps its mark, so a later purge still may.
    keeps_mark = not survey.engine and survey.marked and not _docker_state_goes(places, survey)
    items = []
    for entry in sorted(survey.cache):
        path = root / entry
        what = CACHE_ENTRIES.get(entry, "left by the harness")
        if keeps_mark and entry == marker().parent.name:
            items.append(keep(str(path), f"{what}: the cluster is still there"))
        else:
            items.append(remove(str(path), what, lambda path=path: remove_tree(path)))
    if not keeps_mark:
        items.append(remove(str(root), "the harness's cache", lambda: _remove_empty_dir(root)))
    return items


def created_directories(places: Places, record: dict[str, Any]) -> list[Path]:
    """Directories the harness made on the host, deepest first: the record's own, the
    wrapper's, and those it recorded making."""
    made = {places.record.parent, *map(Path, record.get("created_dirs", []))}
    if "runtime_wrapper" in record:
        made.add(Path(record["runtime_wrapper"]).parent)
    return sorted(made, key=lambda path: len(path.parts), reverse=True)


def _directories(places: Places, survey: Survey) -> list[Item]:
    why = "made by the harness; removed once empty"
    removed = _docker_state_removed(places, survey)
    return [
        remove(str(path), why, lambda path=path: _remove_empty_dir(path))
        for path in created_directories(places, survey.record)
        if path in survey.existing and path not in removed
    ]


def _record(places: Places, survey: Survey) -> list[Item]:
    if places.record not in survey.existing:
        why = "the harness changed nothing on this host, or purge undid it"
        return [gone(str(places.record), why)]
    return [remove(str(places.record), "the record of host changes", _unlink(places.record))]


# -- looking -------------------------------------------------------------------------------


def survey(places: Places) -> Survey:
    """Read the record and the files, and ask Docker and apt, changing nothing."""
    found = read_files(places)
    answers = engine.docker_answers()
    nodes = ["docker", "ps", "-aq", "--filter", f"label={kindtool.NODE_LABEL}"]
    return dataclasses.replace(
        found,
        engine=answers,
        our_dockerd=engine.started_dockerd_pid(found.record),
        cluster=answers and bool(probe(nodes).stdout.strip()),
        images=_list_images() if answers else (),
        packages=_survey_packages(found.record.get("apt_packages", [])),
    )


def read_files(places: Places) -> Survey:
    """What the files alone show: the machine as seen with no engine and no apt."""
    record = machine.load_changes(places.record)
    cache = sorted(os.listdir(places.cache)) if places.cache.is_dir() else None
    candidates = [
        places.record,
        places.daemon_json,
        places.dockerd_log,
        *places.docker_state,
        *created_directories(places, record),
        *([Path(record["runtime_wrapper"])] if "runtime_wrapper" in record else []),
    ]
    return Survey(
        record=record,
        marked=marker().exists(),
        daemon_json=places.daemon_json.read_text() if places.daemon_json.is_file() else None,
        cache=tuple(cache) if cache is not None else None,
        existing=frozenset(path for path in candidates if path.exists() or path.is_symlink()),
    )


def _list_images() -> tuple[Image, ...]:
    def listed(*filters: str) -> set[str]:
        argv = ["docker", "images", *filters, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]
        return set(probe(argv).stdout.splitlines())

    labelled = listed("--filter", f"label={docker.BUILT_BY_LABEL}")
    images = []
    for line in sorted(listed()):
        name, image_id = line.rsplit(" ", 1)
        tagged = name != "<none>:<none>"
        images.append(Image(name if tagged else image_id, line in labelled, tagged))
    return tuple(images)


def purged_by(simulation: str) -> set[str]:
    """The packages an `apt-get -s` run would purge or remove ("Purg NAME [version]")."""
    return {
        line.split()[1].split(":")[0]
        for line in simulation.splitlines()
        if line.startswith(("Purg ", "Remv "))
    }


def _simulate(*args: str) -> set[str]:
    return purged_by(probe(["apt-get", "-s", *args], timeout=120).stdout)


def _survey_packages(recorded: list[str]) -> Packages:
    """Which recorded packages are still installed, which would take others with them, and
    what only they needed (what `autoremove` would newly remove after purging them)."""
    if not recorded or shutil.which("apt-get") is None:
        return Packages()
    installed = tuple(package for package in recorded if machine.installed(package))
    blocked = {}
    for package in installed:
        also = _simulate("purge", package) - set(installed)
        if also:
            blocked[package] = tuple(sorted(also))
    purgeable = [package for package in installed if package not in blocked]
    pulled_in: set[str] = set()
    if purgeable:
        already_orphaned = _simulate("autoremove", "--purge")
        pulled_in = _simulate("purge", "--autoremove", *purgeable) - set(purgeable)
        pulled_in -= already_orphaned
    return Packages(installed, blocked, tuple(sorted(pulled_in)))


# -- doing ---------------------------------------------------------------------------------


def _delete_cluster() -> None:
    GateCluster(kindtool.ensure_kind()).delete()


def _rmi(name: str) -> None:
    """`docker rmi` one tag (or untagged ID); one refused (in use) is kept and said so."""
    with within_step(f"docker rmi {name}") as current:
        try:
            current.run(["docker", "rmi", name])
        except StepFailed:
            print(keep(f"image {name}", f"docker rmi refused it (see {current.log_path})").line())


def _stop_dockerd(record: dict[str, Any], pid: int) -> None:
    if engine.started_dockerd_pid(record) == pid:  # still that very process
        engine.stop_process(pid, engine.DOCKER_STOP_TIMEOUT)


def _apt_purge(packages: list[str]) -> None:
    with within_step(f"apt-get purge {' '.join(packages)}") as current:
        current.run(["apt-get", "purge", "-y", *packages], env=APT_ENV, timeout=600)


def _mounts() -> list[Path]:
    """Mount points, as /proc/self/mounts spells them (octal escapes undone)."""
    text = Path("/proc/self/mounts").read_text()
    points = (line.split()[1] for line in text.splitlines() if line.strip())
    return [Path(point.encode().decode("unicode_escape")) for point in points]


def _unlink(path: Path) -> Callable[[], None]:
    """Removes the file `path`; one already gone (an earlier removal took it) is no error."""
    return functools.partial(path.unlink, missing_ok=True)


def remove_tree(path: Path) -> None:
    """Delete a file or a directory tree, read-only parts included (Go makes its module
    cache read-only), but never one with something mounted inside it. A tree that is a
    mount point itself (a data disk on /var/lib/docker) is emptied: the directory stays, as
    the mount needs it. One already gone is no error: an earlier removal may take it (`kind
    delete cluster` deletes the kubeconfig it wrote once no cluster is left in it)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    mounts = _mounts()
    inside = [point for point in mounts if path in point.parents]
    if inside:
        raise HarnessError(f"{path} has mounts inside ({inside[0]}): stop what uses them")
    path.chmod(path.stat().st_mode | stat.S_IRWXU)
    for parent, directories, _files in os.walk(path):
        for name in directories:  # made writable before os.walk enters it
            directory = Path(parent, name)
            if not directory.is_symlink():
                directory.chmod(directory.stat().st_mode | stat.S_IRWXU)
    if path not in mounts:
        shutil.rmtree(path)
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _remove_empty_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        try:
            path.rmdir()
        except OSError:
            print(keep(str(path), "holds files the harness did not put there").line())


def _may_delete_tree(root: Path) -> bool:
    resolved = root.resolve()
    protected = {Path("/"), Path.home().resolve(), paths.REPO_ROOT}
    return resolved not in protected and not any(resolved in p.parents for p in protected)


def purge(*, dry_run: bool = False) -> None:
    """Survey this machine, then print the plan (`dry_run`) or carry it out."""
    places = Places()
    run(plan(places, survey(places)), dry_run=dry_run)


def run(items: list[Item], *, dry_run: bool) -> None:
    """One line per item; each removal done as its line is printed (not in a dry run)."""
    if dry_run:
        print("dry run: nothing is changed")
        for item in items:
            print(item.line())
    else:
        with step("purge what the harness did to this machine"):
            for item in items:
                print(item.line(), flush=True)
                if item.undo is not None:
                    item.undo()
    if not any(item.verb == "remove" for item in items):
        print("nothing to purge: the harness left nothing here that it can remove")
