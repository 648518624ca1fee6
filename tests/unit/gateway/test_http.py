"""The HTTP error contract through Flask's test client (no database is ever reached)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

import pytest
from flask import session
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from app import create_app
from app.db import Database
from app.errors import GENERIC_MESSAGE, ApiError, from_db_error
from app.lifecycle import Lifecycle
from app.operations import create_ops_app
from app.settings import Settings, Token
from tests.unit.gateway.conftest import assert_error_body, unreachable_dsn
from tests.unit.gateway.test_errors import SQLSTATE_TABLE, fake_db_error

JSON_CT = "application/json"
POST_ROUTES = ["/query", "/transaction"]


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'query': 'x'}", b'{"query": "x",}', b"\xff\xfe\x00", b"NaN", b'{"a": NaN}'],
    ids=["empty", "truncated", "single-quotes", "trailing-comma", "not-utf8", "NaN", "NaN-inside"],
)
def test_malformed_json_is_400(client: FlaskClient, path: str, raw: bytes) -> None:
    error = assert_error_body(client.post(path, data=raw, content_type=JSON_CT), 400)
    assert "JSON" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/query", [], "object"),
        ("/query", "select 1", "object"),
        ("/query", {}, "query"),
        ("/query", {"query": 1}, "query"),
        ("/query", {"query": "select 1", "params": "x"}, "params"),
        ("/query", {"query": "select 1", "timeout_ms": "5"}, "timeout_ms"),
        ("/query", {"query": "select 1", "max_rows": 0}, "max_rows"),
        ("/query", {"query": "select 1", "meta": "yes"}, "meta"),
        ("/query", {"query": "select 1", "sql": "x"}, "sql"),
        ("/transaction", {}, "statements"),
        ("/transaction", {"statements": [{"query": "select 1", "x": 1}]}, "x"),
        ("/transaction", {"statements": [{"query": "select 1"}], "read_only": 1}, "read_only"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    client: FlaskClient, path: str, body: object, field: str
) -> None:
    error = assert_error_body(client.post(path, json=body), 400)
    assert field in error["message"]


def test_deeply_nested_json_is_400_not_500(client: FlaskClient) -> None:
    # Well under MAX_BODY_BYTES; the contract: malformed/unusable body -> 400, never 500.
    response = client.post("/query", data=b"[" * 100_000, content_type=JSON_CT)
    assert_error_body(response, 400)


def test_deeply_nested_params_are_not_500(client: FlaskClient) -> None:
    nested = "[" * 600 + "]" * 600
    raw = '{"query": "select %s", "params": [' + nested + "]}"
    response = client.post("/query", data=raw, content_type=JSON_CT)
    assert response.status_code != 500, response.get_json()


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_non_json_content_type_is_415(
    client: FlaskClient, path: str, content_type: str | None
) -> None:
    response = client.post(path, data=b'{"query": "select 1"}', content_type=content_type)
    assert_error_body(response, 415)


def test_json_with_charset_is_accepted_as_json(client: FlaskClient) -> None:
    response = client.post(
        "/query", data=b'{"query": 1}', content_type="application/json; charset=utf-8"
    )
    assert "query" in assert_error_body(response, 400)["message"]


# Werkzeug's test client leaves `wsgi.input_terminated` out, as a server that does not end
# the input at the body's end would; app.http1 and gunicorn set it (app.routes._input).
TERMINATED = [{}, {"wsgi.input_terminated": True}]


@pytest.mark.parametrize("environ", TERMINATED, ids=["werkzeug-stream", "server-input"])
@pytest.mark.parametrize("path", POST_ROUTES)
def test_body_over_max_body_bytes_is_413(
    make_client: Callable[..., FlaskClient], path: str, environ: dict
) -> None:
    client = make_client(max_body_bytes=1024)
    raw = json.dumps({"query": "select '" + "x" * 2000 + "'"}).encode()
    response = client.post(path, data=raw, content_type=JSON_CT, environ_overrides=environ)
    assert_error_body(response, 413)


@pytest.mark.parametrize("environ", TERMINATED, ids=["werkzeug-stream", "server-input"])
def test_body_at_max_body_bytes_is_read(
    make_client: Callable[..., FlaskClient], environ: dict
) -> None:
    client = make_client(max_body_bytes=1024)
    raw = b'{"bogus": 1}'.ljust(1024, b" ")
    response = client.post("/query", data=raw, content_type=JSON_CT, environ_overrides=environ)
    assert "bogus" in assert_error_body(response, 400)["message"]


def test_flask_max_content_length_still_bounds_a_server_terminated_body(
    make_client: Callable[..., FlaskClient],
) -> None:
    """The server's input is read as it is only while Flask sets no limit of its own."""
    client = make_client(max_body_bytes=1024)
    client.application.config["MAX_CONTENT_LENGTH"] = 100
    raw = b'{"bogus": 1}'.ljust(200, b" ")
    response = client.post(
        "/query", data=raw, content_type=JSON_CT, environ_overrides=TERMINATED[1]
    )
    assert_error_body(response, 413)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/query", {"POST"}),
        ("PUT", "/query", {"POST"}),
        ("GET", "/transaction", {"POST"}),
        ("DELETE", "/transaction", {"POST"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method)
    assert_error_body(response, 405)
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= allow
    assert method not in allow


@pytest.mark.parametrize("path", ["/nope", "/query/extra", "/", "/static/x.js"])
def test_unknown_path_is_404_json(client: FlaskClient, path: str) -> None:
    assert_error_body(client.get(path), 404)


# --- authentication -------------------------------------------------------------------

TOKENS = {"s3cret": Token("admin", None, 5, 5), "reader-token": Token("reports", "reader", 5, 5)}


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", "Basic czNjcmV0", "s3cret", "Bearer s3cret2"],
)
def test_missing_or_wrong_token_is_401(
    make_client: Callable[..., FlaskClient], path: str, authorization: str | None
) -> None:
    client = make_client(api_tokens=TOKENS)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.post(path, json={"query": "select 1"}, headers=headers)
    assert_error_body(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_401_comes_before_body_validation(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(api_tokens=TOKENS)
    assert_error_body(client.post("/query", data=b"{", content_type=JSON_CT), 401)


@pytest.mark.parametrize("token", ["s3cret", "reader-token"])
def test_right_token_gets_past_authentication(
    make_client: Callable[..., FlaskClient], token: str
) -> None:
    client = make_client(api_tokens=TOKENS)
    response = client.post(
        "/query", json={"query": "select 1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_error_body(response, 503)  # reached the (unreachable) database


def test_the_openapi_document_needs_no_token(make_client: Callable[..., FlaskClient]) -> None:
    assert make_client(api_tokens=TOKENS).get("/openapi.json").status_code == 200


# --- errors coming back from the database layer ---------------------------------------


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [pytest.param(code, status, id=name) for code, status, name in SQLSTATE_TABLE],
)
def test_database_errors_map_to_statuses(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, sqlstate: str | None, status: int
) -> None:
    def fail(*_args: object) -> None:
        raise from_db_error(fake_db_error(sqlstate, "it failed"))

    monkeypatch.setattr(Database, "query", fail)
    response = client.post("/query", json={"query": "select 1"})
    error = assert_error_body(response, status)
    assert error["sqlstate"] == sqlstate
    assert ("Retry-After" in response.headers) == (status == 503)


def test_transaction_error_names_the_statement(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object) -> None:
        raise from_db_error(fake_db_error("23505", "dup")).at_statement(1)

    monkeypatch.setattr(Database, "transaction", fail)
    body = {"statements": [{"query": "select 1"}, {"query": "insert into t values (1)"}]}
    error = assert_error_body(client.post("/transaction", json=body), 409, frozenset({"statement"}))
    assert error["statement"] == 1


def test_unreachable_database_is_503_with_retry_after(client: FlaskClient) -> None:
    response = client.post("/query", json={"query": "select 1"})
    assert_error_body(response, 503)
    assert int(response.headers["Retry-After"]) >= 1


def test_unexpected_exception_is_generic_500(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> None:
        raise RuntimeError("password=hunter2 in some internal detail")

    monkeypatch.setattr(Database, "query", explode)
    response = client.post("/query", json={"query": "select 1"})
    error = assert_error_body(response, 500)
    assert error["message"] == GENERIC_MESSAGE
    assert "hunter2" not in response.get_data(as_text=True)


# --- operations endpoints (their own port) and request ids ------------------------------


def _ops(lifecycle: Lifecycle, workers: int = 1) -> FlaskClient:
    return create_ops_app(Settings(dsn=unreachable_dsn()), lifecycle, lambda: workers).test_client()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints_are_not_on_the_data_port(client: FlaskClient, path: str) -> None:
    assert_error_body(client.get(path), 404)


def test_healthz_is_200_json_without_database() -> None:
    response = _ops(Lifecycle()).get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == JSON_CT
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_503_json_when_database_unreachable() -> None:
    response = _ops(Lifecycle()).get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "database unavailable"}


def test_readyz_is_503_while_draining_or_without_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Database, "probe", lambda _self, _timeout: True)
    lifecycle = Lifecycle()
    assert _ops(lifecycle).get("/readyz").status_code == 200
    assert _ops(lifecycle, workers=0).get("/readyz").get_json() == {
        "status": "no worker is running"
    }
    lifecycle.start_draining()
    response = _ops(lifecycle).get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "draining"}


def test_operations_errors_are_json() -> None:
    ops = _ops(Lifecycle())
    assert_error_body(ops.post("/healthz"), 405)
    assert_error_body(ops.get("/query"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/openapi.json"), ("POST", "/query"), ("GET", "/nope"), ("GET", "/query")],
)
def test_request_id_is_echoed(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "abc-123.def:7"})
    assert response.headers["X-Request-ID"] == "abc-123.def:7"


@pytest.mark.parametrize("presented", [None, "", "has space", "x" * 129, "<script>"])
def test_request_id_is_generated_when_absent_or_unusable(
    client: FlaskClient, presented: str | None
) -> None:
    headers = {} if presented is None else {"X-Request-ID": presented}
    first = client.get("/openapi.json", headers=headers).headers["X-Request-ID"]
    second = client.get("/openapi.json", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,128}", first)
    assert first != second
    assert first != presented


def test_api_error_headers_reach_the_response(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object) -> None:
        raise ApiError(503, "busy", headers={"Retry-After": "7"})

    monkeypatch.setattr(Database, "query", fail)
    response = client.post("/query", json={"query": "select 1"})
    assert response.headers["Retry-After"] == "7"


def test_pool_fill_thread_does_not_delay_startup_or_requests() -> None:
    """create_app starts a thread that fills the pool; with PostgreSQL unreachable (a closed
    loopback port, nothing listening) neither start-up nor a request may wait for it."""
    started = time.perf_counter()
    client = create_app(Settings(dsn=unreachable_dsn()), lifecycle=Lifecycle()).test_client()
    assert client.get("/openapi.json").status_code == 200
    assert time.perf_counter() - started < 1.0


def test_options_is_a_json_405(client) -> None:
    response = client.open("/query", method="OPTIONS")
    assert response.status_code == 405
    assert response.is_json
    assert "POST" in response.headers["Allow"]


def test_each_answer_counts_under_its_route_and_status(client: FlaskClient) -> None:
    def count(route: str, status: str) -> float:
        labels = {"route": route, "status": status}
        return REGISTRY.get_sample_value("gateway_requests_total", labels) or 0.0

    def timed(route: str) -> float:
        labels = {"route": route}
        return REGISTRY.get_sample_value("gateway_request_duration_seconds_count", labels) or 0.0

    def figures() -> list[float]:
        return [
            count("/openapi.json", "200"),
            count("unmatched", "404"),
            count("unmatched", "405"),
            timed("/openapi.json"),
        ]

    before = figures()
    for path in ("/openapi.json", "/openapi.json", "/nope", "/query"):
        client.get(path).close()
    assert [a - b for a, b in zip(figures(), before, strict=True)] == [2, 1, 1, 2]


def test_an_answered_request_writes_one_access_line(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("app")
    level = logger.level
    logger.setLevel(logging.INFO)  # as LOG_LEVEL's default configures it
    try:
        client.get("/openapi.json", headers={"X-Request-ID": "line-1"}).close()
    finally:
        logger.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    access = [line for line in lines if line.get("message") == "request"]
    assert len(access) == 1, lines
    line = access[0]
    assert line.pop("duration_ms") >= 0 and line.pop("time").endswith("Z")
    assert line == {
        "level": "info",
        "logger": "app",
        "message": "request",
        "request_id": "line-1",
        "method": "GET",
        "path": "/openapi.json",
        "status": 200,
    }


def test_no_request_has_a_session_to_write(client: FlaskClient) -> None:
    """No cookie is read or set: writing to a request's session is refused."""
    with client.application.test_request_context("/query"):
        assert not session
        with pytest.raises(RuntimeError, match="session is unavailable"):
            session["user"] = "x"
    assert "Set-Cookie" not in client.get("/openapi.json").headers
