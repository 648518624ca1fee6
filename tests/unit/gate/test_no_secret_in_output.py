"""No token or password in any output: the objects that hold them keep them out of their
repr and str (pytest prints a failed check's arguments and the reprs an assertion explains
with), and the e2e plugin's scan finds and names what leaks anyway, without printing it.

Written after an e2e assertion printed the deployment's admin token through the repr of the
load generator (`LoadProbe`)."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.settings import load_settings
from harness import paths, secretscan
from harness.e2e import plugin
from harness.e2e.availability import LoadProbe
from harness.e2e.deploy import Credentials
from harness.local.postgres import LocalPostgres
from harness.local.provision import Logins
from harness.sessions import E2E_PLUGINS
from harness.smoke.target import Gateway

CREDENTIALS = Credentials.random()
TOKEN, PASSWORD = CREDENTIALS.admin_token, CREDENTIALS.gateway_password
LOGINS = Logins()
SERVER = LocalPostgres(Path("/nonexistent/data"))


def holders() -> dict[str, tuple[Any, dict[str, str]]]:
    """Every object of the gate and the app that holds a secret, with the secrets it holds."""
    settings = load_settings(
        {
            "POSTGRES_PASSWORD": PASSWORD,
            "API_TOKENS": f"{TOKEN},{CREDENTIALS.reader_token}:reader",
            "POSTGRES_PASSWORD_READER": CREDENTIALS.reader_password,
        }
    )
    deployment = plugin.Deployment("ns", Path("kubeconfig"), None, CREDENTIALS, {})  # type: ignore[arg-type]
    return {
        "e2e Credentials": (CREDENTIALS, CREDENTIALS.named()),
        "e2e Deployment (a check's argument)": (deployment, CREDENTIALS.named()),
        "e2e LoadProbe": (LoadProbe("127.0.0.1", 31234, TOKEN), {"token": TOKEN}),
        "smoke Gateway": (Gateway("http://127.0.0.1:31234", TOKEN), {"token": TOKEN}),
        "local Logins": (
            LOGINS,
            {"gateway": LOGINS.gateway_password, "reader": LOGINS.reader_password},
        ),
        "local LocalPostgres": (SERVER, {"superuser": SERVER.password}),
        "app Settings": (settings, CREDENTIALS.named()),
    }


@pytest.mark.parametrize("name", holders())
def test_no_secret_in_a_holders_repr_or_str(name: str) -> None:
    holder, held = holders()[name]
    wanted = secretscan.forms(held)
    for shown in (repr(holder), str(holder)):
        found = secretscan.names_in(shown.encode(), wanted)
        assert not found, f"the repr or str of {name} shows {', '.join(found)}"  # names only


def test_a_file_holding_a_secret_is_named_and_the_secret_is_not(tmp_path: Path) -> None:
    wanted = secretscan.forms(CREDENTIALS.named())
    (tmp_path / "e2e").mkdir()
    # An assertion's explanation in the JUnit XML, as pytest writes it with the probe's repr.
    (tmp_path / "junit-e2e.xml").write_text(f"where 59 = {LoadProbe('h', 1, TOKEN)!r}.samples")
    (tmp_path / "e2e" / "describe.txt").write_text("env from the Secret: <set to the key>")
    secret_yaml = base64.b64encode(CREDENTIALS.api_tokens.encode()).decode()
    (tmp_path / "e2e" / "secret.yaml").write_text(f"data:\n  api-tokens: {secret_yaml}\n")
    (tmp_path / "logs.txt").write_text(f"connecting with password={PASSWORD}")
    files = secretscan.files_since(tmp_path, 0)
    leaks = secretscan.scan_files(files, wanted, tmp_path)
    assert sorted(map(str, leaks)) == [
        "e2e/secret.yaml: api-tokens (base64)",
        "logs.txt: gateway_password",
    ]
    assert not any(form.decode() in str(leaks) for form in wanted.values())


def test_files_older_than_the_run_are_not_read(tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text(TOKEN)
    started = old.stat().st_mtime + 1
    assert secretscan.files_since(tmp_path, started) == []
    assert secretscan.files_since(tmp_path / "absent", 0) == []


def test_too_short_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        secretscan.forms({"pin": "1234"})


def watching() -> Any:
    """A session whose config watches CREDENTIALS, as the deployment fixture makes it."""
    session = SimpleNamespace(config=SimpleNamespace(stash=pytest.Stash()))
    plugin.watch_secrets(session.config, CREDENTIALS)  # type: ignore[arg-type]
    return session


def test_a_failure_report_holding_a_secret_is_redacted_and_recorded() -> None:
    """The plugin's hook: the report keeps its text but not the value; the leak is named."""
    session = watching()
    report = pytest.TestReport(
        "tests/e2e/t.py::test_x",
        ("t.py", 1, "test_x"),
        {},
        "failed",
        f"AssertionError: got 401 with Bearer {TOKEN}",
        "call",
        sections=[("Captured stdout call", f"b64 {base64.b64encode(PASSWORD.encode()).decode()}")],
    )
    plugin._redact(session, report)  # type: ignore[arg-type]
    assert TOKEN not in report.longreprtext and "<admin_token: redacted>" in report.longreprtext
    assert report.sections == [
        ("Captured stdout call", "b64 <gateway_password (base64): redacted>")
    ]
    assert [str(leak) for leak in session.config.stash[plugin.LEAKS_KEY]] == [
        "the call report of tests/e2e/t.py::test_x: admin_token",
        "the call report of tests/e2e/t.py::test_x: gateway_password (base64)",
    ]


def test_a_clean_failure_report_is_left_alone() -> None:
    session = watching()
    text = f"AssertionError: {secrets.token_hex(4)} rows lost"
    report = pytest.TestReport("t.py::x", ("t.py", 1, "x"), {}, "failed", text, "call")
    plugin._redact(session, report)  # type: ignore[arg-type]
    assert report.longrepr == text
    assert plugin.LEAKS_KEY not in session.config.stash


# A check as the e2e plugin runs it, watching fresh credentials and printing what it is told to.
PRINTING_CHECK = """
import subprocess
from harness.e2e import plugin
from harness.e2e.deploy import Credentials

def test_prints(request):
    credentials = Credentials.random()
    plugin.watch_secrets(request.config, credentials, "upgrade namespace")
    {what}
"""


@pytest.mark.parametrize(
    ("what", "found"),
    [
        ("print('token', credentials.admin_token)", "upgrade namespace admin_token"),
        (
            "subprocess.run(['echo', credentials.reader_password], check=True)",
            "upgrade namespace reader_password",
        ),
        ("print('the token is in the Secret')", None),
    ],
    ids=["a check's print", "a child process's output", "nothing"],
)
def test_the_terminal_output_is_scanned(tmp_path: Path, what: str, found: str | None) -> None:
    """What a check or a child writes to the terminal fails the session when it holds a
    watched secret (written after the upgrade check's own namespace was watched by nothing)."""
    check = tmp_path / "test_prints.py"
    check.write_text(PRINTING_CHECK.format(what=what))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", *E2E_PLUGINS, str(check)],
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    terminal = tmp_path / "artifacts" / "logs" / plugin.TERMINAL_LOG
    assert "1 passed" in terminal.read_text(), run.stdout  # the copy holds the whole output
    if found is None:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "secret scan: no secret of the run in the terminal output" in run.stderr
    else:
        assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
        assert f"SECRET LEAK in the terminal output ({terminal}); the session fails" in run.stderr
        assert f"e2e-terminal.log: {found}" in run.stderr


def test_the_plugin_refuses_a_capture_that_would_bypass_the_terminal_copy(tmp_path: Path) -> None:
    """pytest's descriptor capture puts its own descriptors back between checks: the copy
    came out empty, so the checks' output would never be scanned."""
    check = tmp_path / "test_prints.py"
    check.write_text(PRINTING_CHECK.format(what="print('nothing secret')"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *E2E_PLUGINS, str(check)],
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "run the e2e checks with -s" in run.stderr
