"""The database's logins on a local server, from the very file the manifests use.

`manifests/base/postgres/roles.sql` is psql input: `\\getenv` sets a variable, `\\connect`
switches database, `\\gexec` runs what the query before it returns, `:'name'` and `:"name"`
interpolate a variable as a literal or an identifier. This runs those meta-commands and the
SQL between them, statement by statement (CREATE DATABASE refuses a transaction block), as
the superuser; the values the file would read from the environment come from `Logins`
instead.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from app.sqlscan import Scanner
from harness import paths
from harness.local.postgres import LocalPostgres

ROLES_SQL = paths.MANIFESTS_DIR / "base" / "postgres" / "roles.sql"
# In SQL psql interpolates :'name' and :"name" (roles.sql uses only those); a meta-command
# argument may also be a bare :name.
_QUOTED_VARIABLE = re.compile(r":'(\w+)'|:\"(\w+)\"")


def _password() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Logins:
    """What roles.sql reads from the environment: the passwords and the database name."""

    database: str = "app"
    # Out of the repr, as every holder of a secret (a failed test prints its arguments).
    gateway_password: str = field(default_factory=_password, repr=False)
    reader_password: str = field(default_factory=_password, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The logins roles.sql creates."""
        return ("gateway", "reader")

    def environment(self) -> dict[str, str]:
        return {
            "APP_DATABASE": self.database,
            "GATEWAY_PASSWORD": self.gateway_password,
            "READER_PASSWORD": self.reader_password,
        }

    def gateway_dsn(self, server: LocalPostgres) -> str:
        return server.dsn(user="gateway", password=self.gateway_password, dbname=self.database)

    def reader_dsn(self, server: LocalPostgres) -> str:
        return server.dsn(user="reader", password=self.reader_password, dbname=self.database)

    def gateway_environment(self, server: LocalPostgres) -> dict[str, str]:
        """How the gateway is configured to log in as gateway, and its reader tokens as
        reader (with POSTGRES_PASSWORD_READER)."""
        return {
            "DATABASE_URL": self.gateway_dsn(server),
            "POSTGRES_PASSWORD_READER": self.reader_password,
        }


def provision(server: LocalPostgres, logins: Logins) -> None:
    """Run roles.sql against a server (again, as PostgreSQL's pod does at each start)."""
    environment = logins.environment()
    variables: dict[str, str] = {}
    database = "postgres"
    block: list[str] = []
    for line in [*ROLES_SQL.read_text().splitlines(), "\\connect"]:
        words = line.split()
        if not line.startswith("\\"):
            block.append(line)
            continue
        _run(server, database, "\n".join(block), variables, gexec=words[0] == "\\gexec")
        block = []
        if words[0] == "\\getenv":
            variables[words[1]] = environment[words[2]]
        elif words[0] == "\\connect" and len(words) > 1:
            database = variables[words[1][1:]] if words[1].startswith(":") else words[1]


def _run(
    server: LocalPostgres, database: str, text: str, variables: dict[str, str], gexec: bool
) -> None:
    pieces = Scanner(text).pieces()
    if not pieces:
        return
    connection = psycopg2.connect(server.dsn(dbname=database))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for piece in pieces:
                statement = _interpolate(text[piece.start : piece.end], variables, connection)
                cursor.execute(statement)
            if gexec:  # each value the last query returned is a statement of its own
                for row in cursor.fetchall() if cursor.description else []:
                    for value in row:
                        if value is not None:
                            cursor.execute(value)
    finally:
        connection.close()


def _interpolate(text: str, variables: dict[str, str], connection: object) -> str:
    """psql's interpolation in SQL: :'v' as a literal, :"v" as an identifier."""

    def value(match: re.Match[str]) -> str:
        literal, identifier = match.groups()
        if literal:
            return sql.Literal(variables[literal]).as_string(connection)
        return sql.Identifier(variables[identifier]).as_string(connection)

    return _QUOTED_VARIABLE.sub(value, text)
