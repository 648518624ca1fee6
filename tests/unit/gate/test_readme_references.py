"""Every README section the harness points to, in a message or a docstring, exists.

A message that sends a user to a section that is not there (or to a file outside the
project) leaves them stuck exactly when they need help.
"""

from __future__ import annotations

import re

from harness import paths

REFERENCE = re.compile(r"README, [\"']([^\"']+)[\"']")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def test_every_readme_section_the_harness_names_exists() -> None:
    headings = set(HEADING.findall((paths.REPO_ROOT / "README.md").read_text()))
    named = {
        (source.relative_to(paths.REPO_ROOT).as_posix(), section)
        for source in (paths.REPO_ROOT / "harness").rglob("*.py")
        for section in REFERENCE.findall(source.read_text())
    }
    assert named, "no README reference found: the pattern is out of date"
    missing = sorted(pair for pair in named if pair[1] not in headings)
    assert not missing, f"README has no such section: {missing}"


def test_no_message_points_outside_the_project() -> None:
    for source in (paths.REPO_ROOT / "harness").rglob("*.py"):
        assert "shared/notes" not in source.read_text(), source
