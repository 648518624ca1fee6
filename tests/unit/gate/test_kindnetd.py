"""The kindnetd stand-in's Go code (images/kindnetd): formatted, vetted, its tests pass.

Its tests run packets through the NetworkPolicy rules it renders (policy_test.go). Built
with the harness's Go caches, like the node image; the first run compiles client-go (about
two minutes on 2 cores), later ones take seconds.
"""

from __future__ import annotations

import pytest

from harness import paths
from harness.build.gobuild import go_env
from harness.steps import HarnessError, probe, step

KINDNETD = paths.IMAGES_DIR / "kindnetd"


def test_kindnetd_is_gofmt_formatted() -> None:
    result = probe(["gofmt", "-l", KINDNETD])  # lists the files gofmt would change
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


@pytest.mark.parametrize("command", [["go", "vet", "./..."], ["go", "test", "-count=1", "./..."]])
def test_kindnetd_go(command: list[str]) -> None:
    """A failure names the step's log, which holds Go's whole output."""
    try:
        with step(f"kindnetd: {' '.join(command)}") as current:
            current.run(command, cwd=KINDNETD, env=go_env())
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
