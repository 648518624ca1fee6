"""The e2e privilege check's query and expected set, against roles.sql run on a real server:
the sound provisioning has exactly the expected privileges, and a grant beyond it is named.
(The e2e check runs the same query in the cluster's PostgreSQL pod.)"""

from __future__ import annotations

import psycopg2
import pytest

from harness.e2e import privileges
from harness.local.provision import ROLES_SQL, provision
from tests.integration.conftest import LOGINS, start_postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """roles.sql on a server of its own: the session's has the other tests' objects."""
    server = start_postgres(tmp_path_factory.mktemp("privileges"))
    yield server
    server.stop()


def read_privileges(server) -> tuple[set[privileges.Privilege], list[str]]:
    connection = psycopg2.connect(server.dsn(dbname=LOGINS.database))
    try:
        with connection.cursor() as cursor:
            cursor.execute(privileges.SQL)
            rows = cursor.fetchall()
    finally:
        connection.close()
    return privileges.parse("\n".join("\t".join(row) for row in rows))


def execute(dsn: str, *statements: str) -> None:
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def test_roles_sql_grants_exactly_the_expected_privileges(server) -> None:
    execute(LOGINS.gateway_dsn(server), "create table app.notes (id serial, body text)")
    actual, relations = read_privileges(server)
    assert relations == ["table app.notes"]
    extra, missing = privileges.differences(actual, LOGINS.database, relations)
    assert (extra, missing) == ([], []), privileges.report(extra, missing)


def test_a_reader_granted_writes_is_named(server) -> None:
    execute(
        server.dsn(dbname=LOGINS.database),
        "grant insert, update, delete on app.notes to reader",
        "grant pg_read_all_data to reader",
        "grant select on app.notes to public",
    )
    try:
        actual, relations = read_privileges(server)
        extra, missing = privileges.differences(actual, LOGINS.database, relations)
        assert [str(privilege) for privilege in extra] == [
            "PUBLIC: SELECT on table app.notes",
            "reader: DELETE on table app.notes",
            "reader: INSERT on table app.notes",
            "reader: MEMBER OF on role pg_read_all_data",
            "reader: UPDATE on table app.notes",
        ]
        assert missing == []
    finally:
        execute(
            server.dsn(dbname=LOGINS.database),
            "revoke insert, update, delete on app.notes from reader",
            "revoke pg_read_all_data from reader",
            "revoke select on app.notes from public",
        )


def test_roles_sql_run_again_brings_an_earlier_releases_database_to_this_ones(server) -> None:
    """PostgreSQL's pod runs roles.sql at every start, so a data directory an earlier release
    provisioned (smaller connection limits, a grant since revoked, another password) gets
    this release's; nothing it created is lost, and a second run changes nothing."""
    execute(
        LOGINS.gateway_dsn(server),
        "create table app.kept (id int)",
        "insert into app.kept values (7)",
    )
    execute(
        server.dsn(),
        "alter role gateway connection limit 40",
        "alter role reader reset temp_file_limit",
        "alter role reader password 'an-earlier-one'",
        "grant execute on function lo_from_bytea(oid, bytea) to public",
    )
    provision(server, LOGINS)
    provision(server, LOGINS)

    connection = psycopg2.connect(LOGINS.reader_dsn(server))  # the Secret's password again
    try:
        with connection.cursor() as cursor:
            cursor.execute("select id from app.kept")
            assert cursor.fetchall() == [(7,)]
            cursor.execute(
                "select rolname, rolconnlimit, rolconfig from pg_roles"
                " where rolname in ('gateway', 'reader') order by rolname"
            )
            limits = {name: (limit, sorted(config)) for name, limit, config in cursor.fetchall()}
    finally:
        connection.close()
    roles_sql = ROLES_SQL.read_text()
    for login, (limit, _) in limits.items():
        assert f"ALTER ROLE {login} CONNECTION LIMIT {limit};" in roles_sql
    assert "temp_file_limit=64MB" in limits["reader"][1]
    actual, relations = read_privileges(server)
    assert relations == ["table app.kept", "table app.notes"]
    extra, missing = privileges.differences(actual, LOGINS.database, relations)
    assert (extra, missing) == ([], []), privileges.report(extra, missing)


@pytest.mark.parametrize("login", ["gateway", "reader"])
@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_the_logins_cannot_connect_to_the_servers_own_databases(server, login, database) -> None:
    """Only the application database is theirs: PostgreSQL lets PUBLIC connect to the others
    (and make temporary tables there) unless roles.sql revokes it."""
    password = {"gateway": LOGINS.gateway_password, "reader": LOGINS.reader_password}[login]
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(server.dsn(user=login, password=password, dbname=database)).close()
