"""The gate's self-test without a cluster: the catalogue stays applicable, copies lint clean.

A mutant that no longer applies (an object renamed, a patched line rewritten) or that names
a check which no longer exists would make the self-test fail or, worse, prove nothing.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from harness import paths
from harness.manifests.render import render
from harness.selftest import mutants, report, run
from harness.selftest.mutants import MUTANTS, Mutant
from harness.steps import HarnessError


@pytest.fixture(scope="module")
def renderings() -> dict[Path, list[dict]]:
    """Each overlay a mutant breaks, rendered once."""
    return {
        overlay: [resource.body for resource in render(overlay)]
        for overlay in {m.overlay for m in MUTANTS}
    }


@pytest.fixture(scope="module")
def documents(renderings: dict[Path, list[dict]]) -> list[dict]:
    return renderings[paths.KIND_OVERLAY]


def test_the_catalogue_has_the_required_mutants() -> None:
    assert len(MUTANTS) >= 10
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    assert all(m.checks and (m.edit or m.patch) for m in MUTANTS)


@pytest.mark.parametrize("check", sorted({c for m in MUTANTS for c in m.checks}))
def test_every_check_a_mutant_names_exists(check: str) -> None:
    path, name = check.split("::")
    source = (paths.REPO_ROOT / path).read_text()
    assert re.search(rf"^def {name}\(", source, re.MULTILINE), check


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.edit], ids=lambda m: m.name)
def test_every_edit_applies_and_changes_the_rendering(
    mutant: Mutant, renderings: dict[Path, list[dict]]
) -> None:
    documents = renderings[mutant.overlay]
    edited = copy.deepcopy(documents)
    assert mutant.edit is not None
    mutant.edit(edited)
    assert edited != documents


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.patch], ids=lambda m: m.name)
def test_every_source_patch_applies(mutant: Mutant, tmp_path: Path) -> None:
    assert mutant.patch is not None
    target = tmp_path / mutant.patch.path
    target.parent.mkdir(parents=True)
    original = (paths.REPO_ROOT / mutant.patch.path).read_text()
    target.write_text(original)
    mutant.patch.apply(tmp_path)
    assert target.read_text() != original
    with pytest.raises(HarnessError, match="update the mutant"):
        mutant.patch.apply(tmp_path)  # applied once, the text it replaces is gone


def test_an_edit_that_finds_nothing_says_so(documents: list) -> None:
    without = [d for d in documents if d["kind"] != "PodDisruptionBudget"]
    with pytest.raises(HarnessError, match="update the mutant"):
        mutants.drop_kind("PodDisruptionBudget")(without)


def test_superuser_login_takes_postgres_own_credentials(documents: list) -> None:
    edited = copy.deepcopy(documents)
    mutants.superuser_login(edited)
    env = {e["name"]: e for e in mutants.gateway(edited)["env"]}
    superuser = {e["name"]: e for e in mutants.postgres(edited)["env"]}
    assert env["POSTGRES_USER"] == superuser["POSTGRES_USER"]
    assert env["POSTGRES_PASSWORD"] == superuser["POSTGRES_PASSWORD"]


def test_select_refuses_unknown_names() -> None:
    assert mutants.select(["no-drain"]) == tuple(m for m in MUTANTS if m.name == "no-drain")
    with pytest.raises(HarnessError, match="no mutant named nope"):
        mutants.select(["nope"])


def test_the_unedited_copy_lints_clean_and_a_mutant_shows(tmp_path: Path) -> None:
    """Without kube-score (which needs Go): the schemas and the project's policy."""
    target = run.write_target(tmp_path / "baseline", None)
    assert run.lint(target.parents[1], tmp_path, None) == []
    broken = next(m for m in MUTANTS if m.name == "no-network-policy")
    target = run.write_target(tmp_path / broken.name, broken)
    assert "netpol.postgres" in run.lint(target.parents[1], tmp_path, None)
    assert "netpol.postgres" in (tmp_path / "lint.txt").read_text()


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" tests="3">
<testcase classname="tests.e2e.gateway.test_rollouts" name="test_a" time="1.0"/>
<testcase classname="tests.e2e.gateway.test_rollouts" name="test_b" time="2.0">
<failure message="AssertionError: 4 failed&#10;assert [...] == []">trace</failure></testcase>
<testcase classname="tests.e2e.gateway.test_round_trip" name="test_c" time="0.1">
<error message="failed on setup with &quot;boom&quot;">trace</error></testcase>
</testsuite></testsuites>
"""


def test_outcomes_read_pytest_junit(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    assert run.outcomes(junit) == {
        "tests/e2e/gateway/test_rollouts.py::test_a": "",
        "tests/e2e/gateway/test_rollouts.py::test_b": "AssertionError: 4 failed",
        "tests/e2e/gateway/test_round_trip.py::test_c": 'failed on setup with "boom"',
    }


def test_the_report_counts_and_names_what_caught_each_mutant() -> None:
    baseline = run.Result("baseline", "sound", ("tests/e2e/gateway",), {"t.py::a": ""})
    results = [
        run.Result("one", "d1", ("x",), {"tests/e2e/t.py::a": "boom | bang"}, seconds=61),
        run.Result("two", "d2", ("x",), {"tests/e2e/t.py::a": ""}, lint=["pdb.gateway"]),
        run.Result("three", "d3", ("x",), {"tests/e2e/t.py::a": ""}),
    ]
    table = report.markdown(baseline, results)
    assert table.startswith("**2/3 mutants caught** (1 by the e2e checks)")
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| one | d1 | yes | `t.py::a`: boom / bang | nothing | 1m01s |")
    assert "| lint only | none | `pdb.gateway` |" in rows[1]
    assert "| **NO** |" in rows[2]


def test_the_flakiness_record_gives_each_checks_pass_rate() -> None:
    runs = [
        run.Result("baseline-1", "sound", ("x",), {"e/t.py::a": "", "e/t.py::b": "fell | behind"}),
        run.Result("baseline-2", "sound", ("x",), {"e/t.py::a": "", "e/t.py::b": ""}),
        run.Result("baseline-3", "sound", ("x",), {"e/t.py::a": ""}),  # b did not run
    ]
    assert report.pass_rates(runs) == {"e/t.py::a": (3, 3), "e/t.py::b": (1, 2)}
    table = report.flakiness_markdown(runs)
    assert table.startswith("**3 runs of the sound deployment: 1 of 2 checks failed")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == ["| `t.py::b` | 1/2 | fell / behind |", "| `t.py::a` | 3/3 |  |"]


@pytest.mark.parametrize(
    ("name", "rules"),
    [
        ("asynchronous-replication", ["postgres.synchronous"]),
        ("single-member", ["postgres.members", "postgres.synchronous"]),
        ("no-member-budget", ["pdb.postgres"]),
        ("members-may-share-a-node", ["postgres.spread"]),
        ("members-egress-anywhere", ["netpol.egress"]),
    ],
)
def test_a_mutant_of_the_replicated_cluster_edits_its_overlay(
    tmp_path: Path, name: str, rules: list[str]
) -> None:
    """Each breaks a copy of overlays/kind-ha (which the replicated checks deploy), and the
    lint names the rules it breaks, and only those."""
    mutant = next(m for m in MUTANTS if m.name == name)
    target = run.write_target(tmp_path / name, mutant)
    assert target.parts[-2:] == ("overlays", "kind-ha")
    assert run.lint(target.parents[1], tmp_path, None) == rules
