"""nox and tox run the same sessions: both come from harness/sessions.py, and tox.ini must be
exactly what it renders (so a session edited in one place cannot drift in the other)."""

from __future__ import annotations

import tomllib

import pytest

from harness import paths, sessions


def test_tox_ini_is_rendered_from_the_sessions() -> None:
    committed = (paths.REPO_ROOT / "tox.ini").read_text()
    assert committed == sessions.render_tox(), (
        "tox.ini differs from harness/sessions.py: run `python -m harness.sessions > tox.ini`"
    )


def test_a_changed_session_changes_tox_ini(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: one command more in a session shows in the rendering."""
    lint, *others = sessions.SESSIONS
    changed = sessions.Session(lint.name, lint.help, lint.groups, (*lint.commands, ("true",)))
    monkeypatch.setattr(sessions, "SESSIONS", (changed, *others))
    assert sessions.render_tox() != (paths.REPO_ROOT / "tox.ini").read_text()


def test_every_group_a_session_installs_is_in_pyproject() -> None:
    pyproject = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())
    groups = set(pyproject["dependency-groups"])
    for session in sessions.SESSIONS:
        assert set(session.groups) <= groups, session.name


def test_defaults_name_sessions_that_exist() -> None:
    names = [session.name for session in sessions.SESSIONS]
    assert set(sessions.DEFAULT_SESSIONS) <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("command", "posargs", "argv"),
    [
        (("pytest", "tests/unit", "{posargs}"), [], ["pytest", "tests/unit"]),
        (("pytest", "{posargs}"), ["-k", "x"], ["pytest", "-k", "x"]),
        (("mkdocs", "{posargs:build}", "--strict"), [], ["mkdocs", "build", "--strict"]),
        (("mkdocs", "{posargs:build}", "--strict"), ["serve"], ["mkdocs", "serve", "--strict"]),
    ],
)
def test_posargs_are_expanded_as_tox_expands_them(command, posargs, argv) -> None:
    assert sessions.expand(command, posargs) == argv


def test_the_e2e_plugins_are_loaded_pytest_kind_first() -> None:
    """One source for the order the e2e plugin insists on (nox, tox and the self-test)."""
    e2e = next(session for session in sessions.SESSIONS if session.name == "e2e")
    (command,) = e2e.commands
    plugins = [command[i + 1] for i, word in enumerate(command) if word == "-p"]
    assert plugins == ["pytest-kind", "harness.e2e.plugin"]
