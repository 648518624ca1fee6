"""`python -m harness.selftest [--mutants NAME,...] [--list] [--repeat N]`: the gate's self-test.

Exit status 0 when every mutant run was caught, 1 when one was not (or the baseline failed).
`--repeat N` runs no mutant: the sound deployment's checks N times, each on a fresh
deployment, and each check's pass rate (artifacts/gate-selftest/flakiness.{md,json}); exit
status 1 when any check failed in any run.
"""

from __future__ import annotations

import argparse
import sys

from harness.selftest import mutants, report, run
from harness.steps import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.selftest", description=__doc__)
    parser.add_argument(
        "--mutants", type=lambda text: text.split(","), help="only these, comma-separated"
    )
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument(
        "--repeat", type=int, metavar="N", help="the sound deployment N times: pass rates"
    )
    args = parser.parse_args(argv)
    if args.repeat:
        runs = run.repeat_baseline(args.repeat)
        md_path, json_path = report.write_flakiness(runs)
        print(f"\n{report.flakiness_markdown(runs)}\nreport: {md_path}, {json_path}")
        return 0 if not any(r.failed for r in runs) else 1
    selected = mutants.select(args.mutants)
    if args.list:
        for mutant in selected:
            print(f"{mutant.name}: {mutant.defect}")
        return 0
    baseline, results = run.run(selected)
    table = report.markdown(baseline, results)
    md_path, json_path = report.write(baseline, results)
    print(f"\n{table}\nreport: {md_path}, {json_path}")
    return 0 if all(result.caught_by for result in results) else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
