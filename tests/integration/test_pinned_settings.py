"""Settings no SQL of a login can move for the sessions after it, a schema of the app's own,
and nothing left of one request's randomness for the next.

Measured at 017843a: `RESET ALL` returned to the role's and the database's defaults, which
the admin token may change: after its `alter role current_user set synchronous_commit =
off`, 268 of 10,125 acknowledged inserts were lost over four immediate restarts; `alter
database app set default_transaction_read_only = on` made every write of every pod 403; a
setting removed by a superuser stayed in pooled connections until each was replaced.
`public` belonged to the gateway's login, so a `public.upper(varchar)` it created ran as
whoever called upper() on a varchar column (a DBA's query made the login a superuser), and
the reader could call any function the admin created. `setseed()` carried over to the next
request on the backend.
"""

from __future__ import annotations

import time

import psycopg2
import pytest

from tests.integration.conftest import DATABASE, LOGINS

ADMIN, READER = "pinned-admin", "pinned-reader"
TOKENS = {"API_TOKENS": f"{ADMIN},{READER}:reader", "READ_ONLY_ROLES": "reader"}


@pytest.fixture
def superuser(postgres):
    """A superuser connection outside the app's schema, as a DBA's would be."""
    connection = psycopg2.connect(postgres.dsn(dbname=DATABASE))
    connection.autocommit = True
    yield connection.cursor()
    connection.close()


@pytest.fixture
def role_and_database_defaults(superuser):
    """The gateway login's and the database's defaults (roles.sql's), as they were before
    the test's SQL changed them."""
    query = (
        "select setrole, setdatabase, setconfig from pg_db_role_setting "
        "where setrole = 'gateway'::regrole or setdatabase = "
        "(select oid from pg_database where datname = %s)"
    )
    superuser.execute(query, (DATABASE,))
    before = superuser.fetchall()
    yield
    superuser.execute("alter role gateway reset all")
    superuser.execute(f"alter database {DATABASE} reset all")
    for role, database, settings in before:
        target = "role gateway" if role else f"database {DATABASE}"
        scope = f" in database {DATABASE}" if role and database else ""
        for setting in settings:
            name, value = setting.split("=", 1)
            superuser.execute(f"alter {target}{scope} set {name} = %s", (value,))


def _show(gateway, name: str, token: str = ADMIN) -> str:
    response = gateway.query(f"select current_setting('{name}') as v", token=token)
    assert response.status_code == 200, response.text
    return response.json()["result"][0]["v"]


@pytest.mark.usefixtures("role_and_database_defaults")
def test_what_sql_sets_for_later_sessions_does_not_reach_the_gateways(start_gateway_for) -> None:
    first = start_gateway_for(**TOKENS)
    for sql in (
        "alter role current_user set synchronous_commit = off",
        "alter role current_user set idle_in_transaction_session_timeout = 1",
        "alter role current_user set search_path = public",
        f"alter database {DATABASE} set default_transaction_read_only = on",
        f"alter database {DATABASE} set statement_timeout = 1",
    ):
        assert first.query(sql, token=ADMIN).status_code == 200, sql
    later = start_gateway_for(**TOKENS)  # every connection new, after those defaults
    assert _show(later, "synchronous_commit") == "on"
    assert _show(later, "search_path") == "app, public"
    assert _show(later, "default_transaction_read_only") == "off"
    assert _show(later, "default_transaction_read_only", READER) == "on"
    later.query("create table if not exists pinned (n int)", token=ADMIN)
    for n in range(20):  # several statements a request: gaps the 1 ms default would end
        written = later.query(
            f"insert into pinned values ({n}); select pg_sleep(0.01); select count(*) from pinned",
            token=ADMIN,
        )
        assert written.status_code == 200, written.text


@pytest.mark.usefixtures("role_and_database_defaults")
def test_a_pooled_connection_follows_a_superusers_change_within_its_age(
    start_gateway_for, superuser
) -> None:
    gateway = start_gateway_for(POOL_MAX_AGE_S="1", WORKERS="1", POOL_MAX="1")
    before = _show(gateway, "work_mem")
    superuser.execute("alter role gateway set work_mem = '7MB'")
    time.sleep(1.2)
    assert _show(gateway, "work_mem") == "7MB"
    superuser.execute("alter role gateway reset work_mem")
    time.sleep(1.2)
    assert _show(gateway, "work_mem") == before


def test_no_login_creates_in_public(gateway_with_tokens) -> None:
    for token in (ADMIN, READER):
        response = gateway_with_tokens.query(
            "create function public.upper(varchar) returns text language sql "
            "as $$ select 'trojan' $$",
            token=token,
        )
        assert response.status_code == 403, response.text


def test_the_reader_runs_only_the_functions_it_was_granted(gateway_with_tokens) -> None:
    created = gateway_with_tokens.query(
        "create or replace function owned_by_gateway() returns int language sql "
        "security definer as $$ select 42 $$",
        token=ADMIN,
    )
    assert created.status_code == 200, created.text
    assert gateway_with_tokens.query("select owned_by_gateway()", token=ADMIN).status_code == 200
    refused = gateway_with_tokens.query("select owned_by_gateway()", token=READER)
    assert refused.status_code == 403, refused.text


def test_the_apps_objects_live_in_a_schema_of_their_own(gateway_with_tokens) -> None:
    gateway_with_tokens.query("create table if not exists placed (n int)", token=ADMIN)
    where = gateway_with_tokens.query(
        "select relnamespace::regnamespace::text as schema from pg_class where relname = 'placed'",
        token=ADMIN,
    )
    assert where.json() == {"result": [{"schema": "app"}]}


@pytest.fixture(scope="module")
def gateway_with_tokens(start_gateway_for):
    return start_gateway_for(**TOKENS)


def test_one_requests_seed_does_not_reach_the_next(start_gateway_for, postgres) -> None:
    gateway = start_gateway_for(WORKERS="1", POOL_MAX="1", POOL_MIN="1")
    direct = psycopg2.connect(LOGINS.gateway_dsn(postgres))
    with direct.cursor() as cursor:
        cursor.execute("select setseed(0.25); select random()")
        predicted = cursor.fetchone()[0]
    direct.close()
    assert gateway.query("select setseed(0.25)").status_code == 200
    drawn = gateway.query("select random() as r").json()["result"][0]["r"]
    assert drawn != predicted
