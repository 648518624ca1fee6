"""Fixtures of the gateway's unit tests: no network, no database, no subprocesses."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions as ext
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.lifecycle import Lifecycle
from app.sessions import Logins
from app.settings import Settings
from app.typecast import _TYPECASTERS

ERROR_KEYS = {"message", "sqlstate", "detail", "hint", "position"}


def unused_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unreachable_dsn() -> dict[str, str]:
    return {"host": "127.0.0.1", "port": str(unused_port()), "user": "unit", "dbname": "unit"}


def cast(oid: int, text: str | None) -> Any:
    """Convert PostgreSQL's text output as a connection set up by the app would.

    The app's per-connection typecasters win; other types fall back to the driver's global
    ones (what `register_typecasters` leaves in place), exactly as on a real connection.
    """
    for caster in _TYPECASTERS:
        if oid in caster.values:
            return caster(text, None)
    return ext.string_types[oid](text, None)


def _refuse_connect() -> ext.connection:
    raise psycopg2.OperationalError("unit tests never connect to PostgreSQL")


@pytest.fixture
def settings() -> Settings:
    return Settings(dsn=unreachable_dsn())


# How a request reaches the views: Flask's dispatch, as werkzeug's test client sends it, or
# the app's direct answer, as a server that ends the body's stream (app.http1, gunicorn)
# sends it (app._GatewayFlask.wsgi_app). Every test of a client runs both ways.
DISPATCH = {"flask": {}, "direct": {"wsgi.input_terminated": True}}


@pytest.fixture(params=sorted(DISPATCH))
def make_client(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Callable[..., FlaskClient]:
    """A test client for `create_app(Settings(**overrides))` that never opens a socket,
    dispatching either way (DISPATCH).

    Every login's connector is replaced before the app is built, so the pools (which bind
    it at construction) and the pool-filling thread fail at once instead of dialling.
    """
    monkeypatch.setattr(Logins, "_connector", lambda _self, _role, _dsn: _refuse_connect)

    def build(**overrides: Any) -> FlaskClient:
        overrides.setdefault("dsn", unreachable_dsn())
        app: Flask = create_app(Settings(**overrides), lifecycle=Lifecycle())
        app.testing = False  # exercise the error handlers, not Flask's test re-raise
        client = app.test_client()
        client.environ_base.update(DISPATCH[request.param])
        return client

    return build


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def assert_error_body(response: Any, status: int, extra_keys: frozenset[str] = frozenset()) -> dict:
    """The contract's error shape: JSON, exactly the documented keys, the given status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS | extra_keys
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]
