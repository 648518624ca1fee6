"""The self-test's verdict: caught/total and, per mutant, what caught it and how long it took;
and the flakiness record: each check's pass rate over repeated runs of the sound deployment.

Written as Markdown (the table docs/selftest.md quotes) and JSON (for anything that compares runs)
under artifacts/gate-selftest/.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from harness.selftest.run import ARTIFACTS, Result
from harness.steps import format_seconds


def short(check: str) -> str:
    """`test_rollouts.py::test_three_rollouts_...` out of a node id."""
    return check.rsplit("/", 1)[-1]


def caught_cell(result: Result) -> str:
    return {"e2e": "yes", "lint only": "lint only"}.get(result.caught_by, "**NO**")


def markdown(baseline: Result, results: list[Result]) -> str:
    caught = sum(bool(r.caught_by) for r in results)
    by_e2e = sum(r.caught_by == "e2e" for r in results)
    lines = [
        f"**{caught}/{len(results)} mutants caught** ({by_e2e} by the e2e checks); "
        f"the baseline passed all {len(baseline.outcomes)} gateway checks in "
        f"{format_seconds(baseline.seconds)}.",
        "",
        "| mutant | defect | caught | failing check | lint finds | wall time |",
        "|---|---|---|---|---|---:|",
    ]
    for r in results:
        failing = "; ".join(
            f"`{short(check)}`: {why.replace('|', '/')}" for check, why in r.failed.items()
        )
        lint = ", ".join(f"`{rule}`" for rule in r.lint) or "nothing"
        lines.append(
            f"| {r.name} | {r.defect} | {caught_cell(r)} | {failing or 'none'} | {lint} "
            f"| {format_seconds(r.seconds)} |"
        )
    return "\n".join(lines) + "\n"


def write(baseline: Result, results: list[Result]) -> tuple[Path, Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    md_path, json_path = ARTIFACTS / "report.md", ARTIFACTS / "report.json"
    md_path.write_text(markdown(baseline, results))
    document = {
        "caught": sum(bool(r.caught_by) for r in results),
        "total": len(results),
        "baseline": asdict(baseline),
        "mutants": [{**asdict(r), "caught_by": r.caught_by} for r in results],
    }
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    return md_path, json_path


def pass_rates(runs: list[Result]) -> dict[str, tuple[int, int]]:
    """Each check: how many of the runs it passed in, of how many it ran in."""
    rates: dict[str, tuple[int, int]] = {}
    for run in runs:
        for check, why in run.outcomes.items():
            passed, ran = rates.get(check, (0, 0))
            rates[check] = (passed + (not why), ran + 1)
    return rates


def flakiness_markdown(runs: list[Result]) -> str:
    rates = pass_rates(runs)
    flaky = sum(passed < ran for passed, ran in rates.values())
    lines = [
        f"**{len(runs)} runs of the sound deployment: {flaky} of {len(rates)} checks failed "
        "at least once.**",
        "",
        "| check | passed | first failure |",
        "|---|---:|---|",
    ]
    for check, (passed, ran) in sorted(rates.items(), key=lambda item: item[1][0] / item[1][1]):
        why = next((r.outcomes[check] for r in runs if r.outcomes.get(check)), "")
        lines.append(f"| `{short(check)}` | {passed}/{ran} | {why.replace('|', '/') or ''} |")
    walls = ", ".join(format_seconds(r.seconds) for r in runs)
    return "\n".join([*lines, "", f"wall times: {walls}"]) + "\n"


def write_flakiness(runs: list[Result]) -> tuple[Path, Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    md_path, json_path = ARTIFACTS / "flakiness.md", ARTIFACTS / "flakiness.json"
    md_path.write_text(flakiness_markdown(runs))
    rates = {check: {"passed": p, "ran": r} for check, (p, r) in pass_rates(runs).items()}
    document = {"runs": [asdict(run) for run in runs], "pass_rates": rates}
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    return md_path, json_path
