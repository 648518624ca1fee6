"""Health, readiness, metrics across workers, request ids, OpenAPI under fuzzing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_health_and_readiness(gateway) -> None:
    assert gateway.get("/healthz").json() == {"status": "ok"}
    assert gateway.get("/readyz").json() == {"status": "ready"}


def test_metrics_aggregate_all_workers(gateway) -> None:
    for _ in range(20):
        gateway.query("select 1")
    gateway.query("selec 1")
    text = gateway.get("/metrics").text
    counts = re.findall(r'gateway_requests_total\{route="/query",status="200"\} (\d+)', text)
    assert counts and int(float(counts[0])) >= 20
    assert 'gateway_sql_errors_total{sqlstate_class="42"}' in text
    for name in (
        "gateway_request_duration_seconds_bucket",
        "gateway_query_duration_seconds",
        "gateway_pool_connections",
        "gateway_pool_in_use",
        "gateway_pool_waiting",
    ):
        assert name in text


def test_request_id_is_echoed_or_generated(gateway) -> None:
    given = gateway.session.get(gateway.url + "/openapi.json", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = gateway.get("/openapi.json").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"POOL_MAX": "lots"}, "configuration error: POOL_MAX: must be an integer, got 'lots'"),
        # An empty role once gave the token full access, a repeated token kept the last
        # entry, and a role in capitals started and then failed every request.
        (
            {"API_TOKENS": "t:"},
            "configuration error: API_TOKENS: entry 1 has an empty field (no role?)",
        ),
        ({"API_TOKENS": "t:reader,t"}, "configuration error: API_TOKENS: a token is listed twice"),
        (
            {"API_TOKENS": "t:READER"},
            "configuration error: API_TOKENS: role 'READER' is not a lower-case PostgreSQL "
            "login name (did you mean 'reader'?)",
        ),
        (
            {"API_TOKENS": "t:reader"},
            "configuration error: API_TOKENS: role 'reader' logs in with its own password: "
            "set POSTGRES_PASSWORD_READER",
        ),
    ],
)
def test_invalid_configuration_stops_with_one_line(env: dict[str, str], line: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [line]


@pytest.mark.parametrize("port", ["data", "ops"])
def test_schemathesis_finds_no_server_error(gateway, port: str, tmp_path: Path) -> None:
    """Each port's operations, fuzzed on the port that serves them (the document names the
    operations listener for its paths). A server error is a 500: 503 and 504 are the
    contract's answers for "not now" (docs/api.md), and the document lets `timeout_ms` be 1,
    within which a new connection cannot open (503, as when no primary answers) nor every
    statement finish (504). Schemathesis counts any 5xx unless told; a 1 ms case that found
    no idle connection failed a fresh-clone run once (2026-12-04)."""
    ARTIFACTS.mkdir(exist_ok=True)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503", "504"]\n'
    )
    ops = ("--include-path-regex", "--url", gateway.ops_url)
    data = ("--exclude-path-regex", "--url", gateway.url)
    paths, url_option, url = ops if port == "ops" else data
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            gateway.url + "/openapi.json",
            paths,
            "^/(healthz|readyz|metrics)$",
            url_option,
            url,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "20",
            "--report",
            "junit",
            "--report-junit-path",
            str(ARTIFACTS / f"schemathesis-{port}-junit.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
