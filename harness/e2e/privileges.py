"""The deployed logins' privileges, read from the catalogs, against what roles.sql grants.

`SQL` (privileges.sql) lists, as the superuser, every privilege of the logins `gateway` and
`reader` (and PUBLIC's on the app's objects): ACL entries, role attributes, memberships,
ownership. `expected` is what roles.sql grants, statement by statement, and nothing else;
`differences` names each extra and each missing privilege. A write that one check tries
tests the reader's read-only default, not its grants; this reads the grants themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SQL = (Path(__file__).with_name("privileges.sql")).read_text()
RELATION = "(relation)"  # the grantee of the rows that list the app's relations


@dataclass(frozen=True, order=True)
class Privilege:
    grantee: str  # a login, or PUBLIC
    privilege: str  # SELECT, CONNECT, OWNER, LOGIN, MEMBER OF, ...
    on: str  # "table app.notes", "database app", "role attribute", ...

    def __str__(self) -> str:
        return f"{self.grantee}: {self.privilege} on {self.on}"


def expected(database: str, relations: Iterable[str]) -> set[Privilege]:
    """What roles.sql grants (database `database`; `relations`: those in schema app)."""
    granted = {
        # CREATE ROLE gateway LOGIN ...; CREATE ROLE reader LOGIN ...: no other attribute,
        # no membership.
        Privilege("gateway", "LOGIN", "role attribute"),
        Privilege("reader", "LOGIN", "role attribute"),
        # CREATE DATABASE ... OWNER gateway; REVOKE ALL ... FROM PUBLIC; GRANT CONNECT ...
        Privilege("gateway", "OWNER", f"database {database}"),
        Privilege("reader", "CONNECT", f"database {database}"),
        # ALTER SCHEMA public OWNER TO the superuser; REVOKE CREATE ... FROM PUBLIC: USAGE
        # stays PUBLIC's, as PostgreSQL made it.
        Privilege("PUBLIC", "USAGE", "schema public"),
        # CREATE SCHEMA app AUTHORIZATION gateway; GRANT USAGE ON SCHEMA app TO reader;
        # what the gateway creates there is its own.
        Privilege("gateway", "OWNER", "schema app"),
        Privilege("reader", "USAGE", "schema app"),
        Privilege("gateway", "OWNER", "objects in schema app"),
        # ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA app GRANT SELECT ON TABLES ...
        Privilege("reader", "SELECT", "default privileges of gateway in schema app on tables"),
        # REVOKE EXECUTE ON FUNCTION lo_creat... FROM PUBLIC; GRANT ... TO gateway
        Privilege("gateway", "EXECUTE", "function lo_creat(integer)"),
        Privilege("gateway", "EXECUTE", "function lo_create(oid)"),
        Privilege("gateway", "EXECUTE", "function lo_from_bytea(oid,bytea)"),
    }
    return granted | {Privilege("reader", "SELECT", relation) for relation in relations}


# Granted by roles.sql but present only once used: large objects the gateway created.
MAY_EXIST = frozenset({Privilege("gateway", "OWNER", "large objects")})


def parse(output: str) -> tuple[set[Privilege], list[str]]:
    """SQL's rows (tab-separated, as `psql -At -F <tab>` prints them): the privileges, and
    the relations of schema app that the reader's SELECT is expected on (its tables, views
    and the like: what `ON TABLES` default privileges cover, not sequences)."""
    privileges, relations = set(), []
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"not a row of the privileges query: {line[:200]!r}")
        grantee, privilege, on = fields
        if grantee == RELATION:
            relations.append(on)
        else:
            privileges.add(Privilege(grantee, privilege, on))
    return privileges, relations


def differences(
    actual: set[Privilege], database: str, relations: Iterable[str]
) -> tuple[list[Privilege], list[Privilege]]:
    """(extra, missing): what the logins have beyond roles.sql's grants, and what they lack."""
    wanted = expected(database, relations)
    return sorted(actual - wanted - MAY_EXIST), sorted(wanted - actual)


def report(extra: list[Privilege], missing: list[Privilege]) -> str:
    lines = [f"  extra: {privilege}" for privilege in extra]
    lines += [f"  missing: {privilege}" for privilege in missing]
    return "the logins' privileges differ from what roles.sql grants:\n" + "\n".join(lines)
