"""Check 1 and 6: the seed round trip through NodePort 127.0.0.1:31234, tokens and the login."""

from __future__ import annotations

import json
import os
import subprocess

from harness import names, paths
from harness.seed import SEED_QUERIES, SEED_RESPONSES

SCRIPT = paths.REPO_ROOT / "scripts" / "post_query.sh"


def test_seed_round_trip_with_post_query_script(deployment) -> None:
    env = {**os.environ, "API_TOKEN": deployment.credentials.admin_token}
    for sql, expected in zip(SEED_QUERIES, SEED_RESPONSES, strict=True):
        done = subprocess.run(
            [str(SCRIPT), "127.0.0.1", str(names.NODE_PORT), sql],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout) == expected


def test_seed_round_trip_with_http_client(deployment) -> None:
    assert deployment.query("drop table if exists account").status_code == 200
    for sql, expected in zip(SEED_QUERIES, SEED_RESPONSES, strict=True):
        response = deployment.query(sql)
        assert response.status_code == 200, response.text
        assert response.json() == expected


def test_requests_without_token_get_401(deployment) -> None:
    for token in (None, "not-a-token"):
        response = deployment.query("select 1", token=token)
        assert response.status_code == 401
        assert response.json()["error"]["message"]


def test_reader_token_cannot_write(deployment) -> None:
    reader = deployment.credentials.reader_token
    assert deployment.query("create table if not exists notes (body text)").status_code == 200
    assert deployment.query("select count(*) from notes", token=reader).status_code == 200
    denied = deployment.query("insert into notes values ('x')", token=reader)
    assert denied.status_code == 403


def test_gateway_does_not_log_in_as_a_superuser(deployment) -> None:
    """The login's own attributes are the real boundary (the README's Security): SQL that
    escapes the gateway's guards can do no more than the login may."""
    response = deployment.query(
        "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "from pg_roles where rolname = session_user"
    )
    assert response.status_code == 200, response.text
    attributes = response.json()["result"]
    assert attributes == [dict.fromkeys(attributes[0], False)], attributes
