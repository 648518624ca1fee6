"""Every request gets a pristine session: nothing one request leaves on a pooled connection
reaches the next one (issue: a reader's temp table swallowed 200 of 200 admin inserts).

With one worker and POOL_MAX=1 every request of a login runs on the same backend, which
each answer proves (pg_backend_pid). Hypothesis draws requests out of statements that
change session state, by either token, some failing half way; after each, a probe on the
same backend must see exactly what a fresh connection sees.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import LOGINS

ADMIN, READER = "isolation-admin", "isolation-reader"

# The session as the probe reports it; compared with the same probe on a fresh connection.
PROBE = """
select pg_backend_pid() as pid,
  (select count(*) from pg_prepared_statements) as prepared,
  (select count(*) from pg_cursors) as cursors,
  (select count(*) from pg_locks where pid = pg_backend_pid() and locktype = 'advisory')
    as advisory_locks,
  (select count(*) from pg_listening_channels()) as listening,
  (select count(*) from pg_class where relnamespace = pg_my_temp_schema()) as temp_relations,
  current_user::text as current_user, session_user::text as session_user,
  (select string_agg(name || '=' || setting, ',' order by name) from pg_settings
    where source not in ('default', 'override')
      and name not in ('statement_timeout', 'idle_in_transaction_session_timeout'))
    as settings
"""
# lastval() fails (55000) in a session that has not used a sequence: DISCARD SEQUENCES ran.
NO_SEQUENCE_STATE = "select lastval()"

STATE_CHANGES = [
    "create temp table account (id_user int, username text)",
    "create temp table t_{n} (x int) on commit preserve rows",
    "prepare p_{n} as select 1",
    "declare c_{n} cursor with hold for select 1",
    "declare pgw_{n} cursor with hold for select 2",  # like the gateway's own cursors
    "select pg_advisory_lock({n})",
    "select pg_advisory_lock_shared({n})",
    "listen channel_{n}",
    "set search_path = pg_temp, public",
    "set session work_mem = '{n}MB'",
    "set datestyle = 'SQL, DMY'",
    "set intervalstyle = 'postgres'",
    "set bytea_output = 'escape'",
    "set standard_conforming_strings = off",
    "set client_min_messages = 'debug1'",
    "select set_config('application_name', 'poisoned_{n}', false)",
    "select set_config('myapp.tenant', '{n}', false)",
    "set session characteristics as transaction read only",
    "set role none",
    "set role {login}",
    "set session authorization {login}",
    "select nextval('seq')",
    "reset all",
    "discard plans",
]
FAILURE = "select 1 / 0"


def _pid_and_state(gateway, token: str) -> dict:
    response = gateway.query(PROBE, token=token)
    assert response.status_code == 200, response.text
    state = response.json()["result"][0]
    lastval = gateway.query(NO_SEQUENCE_STATE, token=token).json()
    state["lastval"] = lastval.get("error", {}).get("sqlstate") or lastval
    return state


@pytest.fixture(scope="module")
def isolated(start_gateway_for, postgres):
    postgres.execute(
        "create sequence if not exists seq",
        "grant usage on sequence seq to reader",
        "create table if not exists account (id_user int, username text)",
        "grant select on account to reader",
        dsn=LOGINS.gateway_dsn(postgres),
    )
    return start_gateway_for(
        WORKERS="1", POOL_MAX="1", POOL_MIN="1", API_TOKENS=f"{ADMIN},{READER}:reader"
    )


@pytest.fixture(scope="module")
def fresh(isolated) -> dict[str, dict]:
    """The probe's answer on each login's connection before anything ran on it."""
    return {token: _pid_and_state(isolated, token) for token in (ADMIN, READER)}


request_statements = st.lists(st.sampled_from(STATE_CHANGES), min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    statements=request_statements,
    token=st.sampled_from([ADMIN, READER]),
    route=st.sampled_from(["query", "transaction"]),
    fail_at_end=st.booleans(),
    n=st.integers(min_value=1, max_value=9),
)
def test_no_state_survives_a_request(
    isolated, fresh, statements, token, route, fail_at_end, n
) -> None:
    login = "gateway" if token == ADMIN else "reader"
    sql = [s.format(n=n, login=login) for s in statements] + ([FAILURE] if fail_at_end else [])
    if route == "query":
        isolated.query("; ".join(sql), token=token)
    else:
        body = {"statements": [{"query": s} for s in sql]}
        isolated.post("/transaction", body, token=token)
    after = _pid_and_state(isolated, token)
    assert after == fresh[token], (sql, token, route)


def test_a_readers_temp_table_never_swallows_an_admins_insert(isolated, admin) -> None:
    """The measured failure: 200 of 200 acknowledged admin inserts went to a temp table."""
    admin.execute("truncate account")
    for i in range(50):
        isolated.query("create temp table account (id_user int, username text)", token=READER)
        isolated.query("create temp table account (id_user int, username text)", token=ADMIN)
        written = isolated.query(f"insert into account values ({i}, 'admin')", token=ADMIN)
        assert written.status_code == 200, written.text
    admin.execute("select count(*) from app.account")
    assert admin.fetchone() == (50,)


def test_a_held_cursor_named_like_the_gateways_does_not_break_the_next_select(isolated) -> None:
    for n in range(4):  # pgw_0 was the old gateway's own cursor: every SELECT then failed
        isolated.query(f"declare pgw_{n} cursor with hold for select 1", token=READER)
    response = isolated.query("select 42 as answer", token=READER)
    assert response.json() == {"result": [{"answer": 42}]}
