"""PostgreSQL's own regression test of data-modifying statements in WITH, run on PostgreSQL
directly and through the gateway: every statement must end the same way on both.

The gateway must run valid SQL exactly as PostgreSQL runs it. An earlier version wrapped a
data-modifying statement with RETURNING in a temporary table, and so refused some that
PostgreSQL accepts (a data-modifying WITH feeding another data-modifying statement failed
with 0A000). PostgreSQL's own tests hold the corner cases nobody thinks to write by hand.
The script (fixtures/with_data_modifying.sql; its header says where it comes from) runs
once on each side, in a fresh schema of each side's own, as the same login. The two must
agree statement by statement on success or failure, a failure's SQLSTATE and a success's
row count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from app.sqlscan import Scanner
from harness.local.postgres import LocalPostgres
from tests.integration.conftest import DATABASE, LOGINS, Gateway, GatewayFactory

SCRIPT = Path(__file__).parent / "fixtures" / "with_data_modifying.sql"
SCHEMAS = DIRECT_SCHEMA, GATEWAY_SCHEMA = "with_pg", "with_gw"
TIMEOUT_MS = 30_000
# Transaction control, which the gateway refuses by design (every request is a transaction
# of its own), is skipped on both sides: the script's one BEGIN and COMMIT, around a SET
# LOCAL and one statement, which then run one by one on both (SET LOCAL only warns outside
# a transaction block). The script holds no COPY FROM STDIN or TO STDOUT, the gateway's
# other refusal by design.
TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ABORT", "ROLLBACK"})


@dataclass(frozen=True)
class Outcome:
    """How a statement ended: success with its row count (None: it returns no rows), or
    failure with its SQLSTATE. The message only explains a mismatch."""

    ok: bool
    sqlstate: str | None = None
    rows: int | None = None
    message: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.ok:
            return "ok, no rows" if self.rows is None else f"ok, {self.rows} rows"
        return f"failed {self.sqlstate}: {self.message}"


def script_statements() -> list[tuple[int, str]]:
    """The script's statements in order with their line numbers, split as the gateway
    splits them, without transaction control."""
    text = SCRIPT.read_text()
    return [
        (text.count("\n", 0, piece.start) + 1, text[piece.start : piece.end])
        for piece in Scanner(text).pieces()
        if piece.words[:1] and piece.words[0] not in TRANSACTION_CONTROL
    ]


def run_directly(cursor: Any, statement: str) -> Outcome:
    """One statement on PostgreSQL itself, in autocommit."""
    try:
        cursor.execute(statement)
    except psycopg2.Error as error:
        return Outcome(False, error.pgcode, message=error.diag.message_primary or str(error))
    if cursor.description is None:
        return Outcome(True)
    return Outcome(True, rows=len(cursor.fetchall()))


def run_through(gateway: Gateway, statement: str) -> Outcome:
    """One statement as one request to the gateway."""
    response = gateway.query(statement, timeout_ms=TIMEOUT_MS)
    body = response.json()
    if response.status_code != 200:
        error = body["error"]
        message = f"HTTP {response.status_code}: {error['message']}"
        return Outcome(False, error.get("sqlstate"), message=message)
    result = body["result"]
    return Outcome(True, rows=None if result == "OK" else len(result))


@pytest.fixture
def schemas(postgres: LocalPostgres) -> Iterator[None]:
    """The two sides' fresh schemas, owned by the gateway's login; dropped afterwards."""
    superuser = postgres.dsn(dbname=DATABASE)
    drop = [f"DROP SCHEMA IF EXISTS {name} CASCADE" for name in SCHEMAS]
    create = [f"CREATE SCHEMA {name} AUTHORIZATION gateway" for name in SCHEMAS]
    postgres.execute(*drop, *create, dsn=superuser)
    yield
    postgres.execute(*drop, dsn=superuser)


def test_data_modifying_with_runs_as_on_postgresql(
    postgres: LocalPostgres, start_gateway_for: GatewayFactory, schemas: None
) -> None:
    statements = script_statements()
    connection = psycopg2.connect(
        LOGINS.gateway_dsn(postgres), options=f"-c search_path={DIRECT_SCHEMA}"
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            direct = [run_directly(cursor, statement) for _, statement in statements]
    finally:
        connection.close()
    gateway = start_gateway_for(POSTGRES_SCHEMA=GATEWAY_SCHEMA, MAX_ROWS="100000")
    through = [run_through(gateway, statement) for _, statement in statements]

    succeeded = sum(outcome.ok for outcome in direct)
    print(
        f"\n{SCRIPT.name}: {len(statements)} statements run on each side; {succeeded} "
        f"succeeded on PostgreSQL, {sum(outcome.ok for outcome in through)} through the gateway"
    )
    mismatches = [
        f"statement {index} (line {line}) {statement[:200]!r}:\n"
        f"  PostgreSQL: {expected}\n  gateway: {got}"
        for index, ((line, statement), expected, got) in enumerate(
            zip(statements, direct, through, strict=True)
        )
        if expected != got
    ]
    assert not mismatches, "\n".join(mismatches)
