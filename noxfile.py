"""The gate: thin nox sessions, declared once in harness/sessions.py (tox.ini is rendered
from the same declarations); the logic lives in `harness/` and the tests. `nox -l` lists
them with what each does."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

# nox imports this file by path, with its own interpreter's sys.path: the repository's
# packages are importable only once its root is on it.
sys.path.insert(0, str(Path(__file__).parent))

from harness.sessions import DEFAULT_SESSIONS, PYTHON, SESSIONS, Session, expand

nox.options.default_venv_backend = "uv"
nox.options.sessions = list(DEFAULT_SESSIONS)
nox.options.error_on_missing_interpreters = True


def install_groups(session: nox.Session, *groups: str) -> None:
    """Install the locked runtime dependencies plus the named groups (uv.lock is the truth)."""
    session.run_install(
        "uv",
        "sync",
        "--frozen",
        "--no-default-groups",
        *(f"--group={group}" for group in groups),
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


def register(spec: Session) -> None:
    def run(session: nox.Session) -> None:
        install_groups(session, *spec.groups)
        for command in spec.commands:
            session.run(*expand(command, session.posargs))

    run.__doc__ = spec.help
    nox.session(run, name=spec.name, python=PYTHON)


for spec in SESSIONS:
    register(spec)
