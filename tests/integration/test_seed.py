"""The three seed-compatible requests answer exactly as the design writes them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.seed import SEED_QUERIES, SEED_RESPONSES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "post_query.sh"


@pytest.fixture
def no_account_table(admin) -> None:
    admin.execute("DROP TABLE IF EXISTS account")


@pytest.mark.usefixtures("no_account_table")
def test_seed_requests_with_http_client(gateway) -> None:
    for sql, expected in zip(SEED_QUERIES, SEED_RESPONSES, strict=True):
        response = gateway.query(sql)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == expected


@pytest.mark.usefixtures("no_account_table")
def test_seed_requests_with_post_query_script(gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    for sql, expected in zip(SEED_QUERIES, SEED_RESPONSES, strict=True):
        done = subprocess.run(
            [str(SCRIPT), host, port, sql], capture_output=True, text=True, check=True
        )
        assert json.loads(done.stdout) == expected


def test_post_query_script_keeps_quotes_intact(gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    sql = """select 'it''s "quoted" \\ back\\slash' as text, $$dollar 'quoted'$$ as d"""
    done = subprocess.run([str(SCRIPT), host, port, sql], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "result": [{"text": 'it\'s "quoted" \\ back\\slash', "d": "dollar 'quoted'"}]
    }


def test_post_query_script_reports_errors_with_status(gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    done = subprocess.run([str(SCRIPT), host, port, "selec 1"], capture_output=True, text=True)
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["sqlstate"] == "42601"
