"""Run the e2e checks, and the manifest lint, against the sound deployment and each mutant.

For every run a directory `artifacts/gate-selftest/<name>/` holds what was deployed
(`manifests/overlays/kind/`: the rendered `kind` overlay, edited, as a kustomization the
lint and the deploy both read; `overlays/kind-ha/` for a mutant of the replicated cluster),
the lint's findings, the checks' JUnit XML, the timelines they wrote
(artifacts/e2e/*-timeline.*) and, for a patched gateway, the patch as a diff; the patched
source itself is a temporary copy of the working tree. The checks run in their own pytest
process with the e2e plugin pointed at the copy (`--deploy-manifests` or
`--replicated-manifests`, `--gateway-source`); its output goes to the step's log.
"""

from __future__ import annotations

import difflib
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import paths
from harness.e2e.availability import INCONCLUSIVE_PREFIX
from harness.e2e.plugin import INCONCLUSIVE_EXIT
from harness.manifests import kubescore
from harness.manifests import lint as manifest_lint
from harness.manifests.render import render
from harness.selftest.mutants import CHECKS, Mutant
from harness.sessions import E2E_PLUGINS
from harness.steps import HarnessError, Step, format_seconds, say, step

ARTIFACTS = paths.ARTIFACTS_DIR / "gate-selftest"
BASELINE = "baseline"
PYTEST_PASSED, PYTEST_FAILED = 0, 1


@dataclass
class Result:
    """What one run found: every check that ran, with the first line of its failure ("" when
    it passed), and the lint's rule ids."""

    name: str
    defect: str
    checks: tuple[str, ...]
    outcomes: dict[str, str] = field(default_factory=dict)
    lint: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> dict[str, str]:
        """The checks that failed; one that could not make its load did not catch anything."""
        return {
            check: why
            for check, why in self.outcomes.items()
            if why and not why.startswith(INCONCLUSIVE_PREFIX)
        }

    @property
    def inconclusive(self) -> list[str]:
        return [c for c, why in self.outcomes.items() if why.startswith(INCONCLUSIVE_PREFIX)]

    @property
    def caught_by(self) -> str:
        """What noticed the defect: the e2e checks, the lint only, or nothing ("")."""
        if self.failed:
            return "e2e"
        return "lint only" if self.lint else ""


# The option that points the e2e plugin at a copy of each overlay a mutant may break.
OVERLAY_OPTIONS = {
    paths.KIND_OVERLAY: "--deploy-manifests",
    paths.KIND_HA_OVERLAY: "--replicated-manifests",
}


def overlay_of(mutant: Mutant | None) -> Path:
    """The overlay the mutant breaks (`kind` for the baseline)."""
    return mutant.overlay if mutant is not None else paths.KIND_OVERLAY


def write_target(directory: Path, mutant: Mutant | None) -> Path:
    """The mutant's overlay rendered, edited by the mutant, as a kustomization of its own."""
    overlay = overlay_of(mutant)
    target = directory / overlay.relative_to(paths.REPO_ROOT)
    target.mkdir(parents=True, exist_ok=True)
    documents = [resource.body for resource in render(overlay)]
    if mutant is not None and mutant.edit is not None:
        mutant.edit(documents)
    (target / "rendered.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    (target / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [rendered.yaml]\n"
    )
    return target


def copy_source(current: Step, destination: Path) -> None:
    """The working tree as git sees it (tracked and untracked, minus the ignored)."""
    listing = current.output(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=paths.REPO_ROOT,
    )
    for relative in filter(None, listing.split("\0")):
        origin = paths.REPO_ROOT / relative
        if origin.is_file():  # a tracked file deleted in the working tree is not listed twice
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination / relative)


def write_diff(source: Path, path: str, directory: Path) -> None:
    before = (paths.REPO_ROOT / path).read_text().splitlines(keepends=True)
    after = (source / path).read_text().splitlines(keepends=True)
    diff = difflib.unified_diff(before, after, f"a/{path}", f"b/{path}")
    (directory / "source.diff").write_text("".join(diff))


def lint(manifests: Path, directory: Path, kube_score: Path | None) -> list[str]:
    """The manifest lint (`python -m harness.manifests --manifests DIR`, which runs kube-score
    too) on the copy: its findings go to lint.txt, their rule ids are the answer."""
    findings = manifest_lint.lint(manifests, kube_score=kube_score).findings
    (directory / "lint.txt").write_text("".join(f"{finding}\n" for finding in findings))
    return sorted({finding.rule for finding in findings})


def node_id(testcase: ET.Element) -> str:
    module = testcase.get("classname", "").replace(".", "/")
    return f"{module}.py::{testcase.get('name')}"


def outcomes(junit: Path) -> dict[str, str]:
    """Each check of a JUnit XML report: the first line of its failure or error, or ""."""
    found = {}
    report = ET.parse(junit)  # noqa: S314 - written by the pytest this run started
    for testcase in report.getroot().iter("testcase"):
        found[node_id(testcase)] = ""
        for outcome in ("failure", "error"):
            element = testcase.find(outcome)
            if element is not None:
                lines = (element.get("message") or "").strip().splitlines() or [outcome]
                found[node_id(testcase)] = lines[0][:200]
    return found


def run_checks(
    current: Step, checks: tuple[str, ...], target: Path, option: str, source: Path, junit: Path
) -> dict[str, str]:
    """The checks in their own pytest process against `target` (the copy the plugin's
    `option` points them at) built from `source`."""
    status = current.run(
        [
            *(sys.executable, "-m", "pytest", *checks, "-s", *E2E_PLUGINS),
            *(f"--junitxml={junit}", option, target, "--gateway-source", source),
        ],
        cwd=paths.REPO_ROOT,
        check=False,
    )
    if status == INCONCLUSIVE_EXIT:
        raise HarnessError(
            f"{', '.join(checks)}: no check failed, and some could not make their load "
            "(inconclusive): nothing was judged; run the self-test where the CPU is not busy"
        )
    if status not in (PYTEST_PASSED, PYTEST_FAILED) or not junit.is_file():
        raise HarnessError(f"pytest exited {status} without a verdict on {', '.join(checks)}")
    return outcomes(junit)


def keep_timelines(since: float, directory: Path) -> None:
    """Copy the timelines the checks wrote since `since` (time.time()): the next run
    overwrites them under artifacts/e2e/."""
    for timeline in paths.E2E_ARTIFACTS.glob("*-timeline.*"):
        if timeline.stat().st_mtime >= since:
            shutil.copy2(timeline, directory / timeline.name)


def run_one(
    name: str, defect: str, checks: tuple[str, ...], mutant: Mutant | None, kube_score: Path
) -> Result:
    """Write the copy, lint it, deploy it and run the checks; the wall time is the whole."""
    directory = ARTIFACTS / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    result = Result(name, defect, checks)
    started, wall_clock = time.monotonic(), time.time()
    with step(f"gate self-test: {name}") as current:
        target = write_target(directory, mutant)
        result.lint = lint(target.parents[1], directory, kube_score)
        with tempfile.TemporaryDirectory(prefix=f"gate-selftest-{name}-") as scratch:
            source = paths.REPO_ROOT
            if mutant is not None and mutant.patch is not None:
                source = Path(scratch)
                copy_source(current, source)
                mutant.patch.apply(source)
                write_diff(source, mutant.patch.path, directory)
            junit = directory / "junit.xml"
            option = OVERLAY_OPTIONS[overlay_of(mutant)]
            result.outcomes = run_checks(current, checks, target, option, source, junit)
        keep_timelines(wall_clock, directory)
    result.seconds = time.monotonic() - started
    verdict = f"caught by {result.caught_by}" if result.caught_by else "NOT CAUGHT"
    if name == BASELINE:
        sound = not (result.failed or result.lint or result.inconclusive)
        verdict = "passed" if sound else "FAILED"
    say(f"    {name}: {verdict} in {format_seconds(result.seconds)}")
    return result


def run(mutants: tuple[Mutant, ...]) -> tuple[Result, list[Result]]:
    """The baseline (every gateway check, which must pass), then each mutant."""
    kube_score = kubescore.ensure_kube_score()
    baseline = run_one(BASELINE, "the deployment as committed", (CHECKS,), None, kube_score)
    if baseline.failed or baseline.lint or baseline.inconclusive:
        problems = [*baseline.failed, *baseline.inconclusive, *baseline.lint]
        raise HarnessError(
            f"the sound deployment does not pass ({', '.join(problems)}): a self-test against "
            f"it would mean nothing; see {ARTIFACTS / BASELINE}"
        )
    return baseline, [run_one(m.name, m.defect, m.checks, m, kube_score) for m in mutants]


def repeat_baseline(times: int) -> list[Result]:
    """The sound deployment's checks `times` times, each against a fresh deployment: the
    flakiness record (a check that fails here fails for no defect)."""
    kube_score = kubescore.ensure_kube_score()
    return [
        run_one(f"{BASELINE}-{n}", "the deployment as committed", (CHECKS,), None, kube_score)
        for n in range(1, times + 1)
    ]
