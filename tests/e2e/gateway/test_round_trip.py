"""Check 1 and 6: the seed round trip through NodePort 127.0.0.1:31234, tokens and the login."""

from __future__ import annotations

import json
import os
import subprocess
import time

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


def test_reader_token_creates_no_large_object(deployment) -> None:
    """The reader's transactions are read-only by the gateway's construction
    (READ_ONLY_ROLES), not by a role default its SQL could switch off first."""
    count = "select count(*) as n from pg_largeobject_metadata"
    before = deployment.query(count).json()["result"]
    reader = deployment.credentials.reader_token
    for sql in (
        "select lo_from_bytea(0, 'x')",
        "set transaction read write; select lo_from_bytea(0, 'x')",
    ):
        denied = deployment.query(sql, token=reader)
        assert denied.status_code in {400, 403}, (sql, denied.text)
    assert deployment.query(count).json()["result"] == before


def test_a_request_that_swallows_the_cancel_leaves_no_backend(deployment) -> None:
    """PL/pgSQL that catches query_canceled outlives the cancel: the gateway ends the
    backend itself once the grace after the deadline has passed."""
    swallows = (
        "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(1000); "
        "EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$"
    )
    assert deployment.query(swallows, timeout_ms=300).status_code == 504
    left = (
        "select count(*) as n from pg_stat_activity "
        "where query like '%pg_sleep(1000)%' and pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 20
    while (running := deployment.query(left).json()["result"][0]["n"]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert running == 0, "a backend outlived its request by 20 s"


def test_gateway_does_not_log_in_as_a_superuser(deployment) -> None:
    """The login's own attributes are the real boundary (docs/security.md): SQL that
    escapes the gateway's guards can do no more than the login may."""
    response = deployment.query(
        "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "from pg_roles where rolname = session_user"
    )
    assert response.status_code == 200, response.text
    attributes = response.json()["result"]
    assert attributes == [dict.fromkeys(attributes[0], False)], attributes
