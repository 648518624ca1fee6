"""The gateway's Flask subclass and response class: their shortcuts answer as Flask's and
werkzeug's own ways do."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, after_this_request, request_started
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wsgi import ClosingIterator

from app import _GatewayFlask
from app.db import Database
from app.errors import ApiError
from app.responses import LeanResponse, json_response
from app.transaction import StatementResult
from tests.unit.gateway.conftest import DISPATCH


def _matched(adapter: Any) -> Any:
    """What an adapter's match gives: (endpoint, arguments), or the HTTP error's status
    and allowed methods."""
    try:
        rule, arguments = adapter.match(return_rule=True)
    except HTTPException as error:
        return error.code, sorted(getattr(error, "valid_methods", None) or [])
    return rule.endpoint, arguments


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "OPTIONS", "PUT"])
@pytest.mark.parametrize(
    "path",
    ["/query", "/transaction", "/openapi.json", "/query/", "//query", "/nope", "/", "/query?a=1"],
)
@pytest.mark.parametrize("host", ["localhost:8080", "EXAMPLE.org", "[::1]:80", "bad host"])
@pytest.mark.parametrize("upgrade", [False, True])
def test_routes_match_as_flask_matches_them(
    client: FlaskClient, method: str, path: str, host: str, upgrade: bool
) -> None:
    app = client.application
    headers = {"Host": host}
    if upgrade:  # werkzeug then matches WebSocket rules only
        headers |= {"Connection": "Upgrade", "Upgrade": "websocket"}
    with app.test_request_context(path, method=method, headers=headers) as context:
        ours = app.create_url_adapter(context.request)
        flasks = Flask.create_url_adapter(app, context.request)
        assert _matched(ours) == _matched(flasks)
        assert (ours.script_name, ours.url_scheme, ours.subdomain) == (
            flasks.script_name,
            flasks.url_scheme,
            flasks.subdomain,
        )


def test_a_server_name_leaves_the_url_adapter_to_flask(
    make_client: Callable[..., FlaskClient],
) -> None:
    app = make_client().application
    app.config["SERVER_NAME"] = "gateway.example"
    with app.test_request_context("/query", method="POST", headers={"Host": "other"}) as context:
        assert _matched(app.create_url_adapter(context.request)) == _matched(
            Flask.create_url_adapter(app, context.request)
        )


@pytest.mark.parametrize("server_name", [None, "gateway.example"])
def test_an_app_context_gets_the_url_adapter_flask_gives_it(
    make_client: Callable[..., FlaskClient], server_name: str | None
) -> None:
    app = make_client().application
    app.config["SERVER_NAME"] = server_name
    ours, flasks = app.create_url_adapter(None), Flask.create_url_adapter(app, None)
    assert (ours is None) == (flasks is None)
    if flasks is not None:
        assert (ours.server_name, ours.script_name, ours.url_scheme) == (
            flasks.server_name,
            flasks.script_name,
            flasks.url_scheme,
        )


def test_ensure_sync_remembers_the_apps_own_functions_and_keeps_no_other(
    client: FlaskClient,
) -> None:
    app: Any = client.application

    def view() -> str:
        return "x"

    async def coroutine_view() -> str:
        return "y"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is app.ensure_sync(view)
    for _ in range(2):  # Flask's answer, never a remembered one: without asgiref, refused
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine_view)
    _dispatching(client, "flask")  # Flask's dispatch asks
    client.post("/query", json={"query": "select 1"})  # the view and the hooks are asked
    assert app.view_functions["gateway.query"] in app._plain
    assert set(app.before_request_funcs[None]) | set(app.after_request_funcs[None]) <= app._plain
    kept = set(app._plain)
    for _ in range(100):  # a function made per request, as after_this_request takes
        assert app.ensure_sync(lambda response: response) is not None
    gc.collect()
    assert app._plain == kept
    assert view not in kept

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "z"

    unhashable = Unhashable()
    assert app.ensure_sync(unhashable) is unhashable  # Flask's answer, not remembered


def _hooked(app_class: type[Flask], layout: str, calls: list[str]) -> Flask:
    """An app whose request hooks and teardown functions record their calls: the app's
    own, one hook answering in the view's stead, or a blueprint's and a URL value
    preprocessor (which the subclass leaves to Flask)."""
    app = app_class("hooked")
    hooks: Flask | Blueprint = app
    if layout == "blueprint":
        hooks = Blueprint("part", "hooked")
        hooks.url_value_preprocessor(lambda endpoint, values: calls.append(f"values {endpoint}"))

    @hooks.before_request
    def first() -> Any:
        calls.append("before 1")
        return ("answered by a hook", 203) if layout == "answering" else None

    @hooks.before_request
    def second() -> None:
        calls.append("before 2")

    for name in ("after 1", "after 2"):

        def after(response: Response, name: str = name) -> Response:
            calls.append(name)
            response.headers["X-Order"] = response.headers.get("X-Order", "") + name
            return response

        hooks.after_request(after)

    for name in ("teardown 1", "teardown 2"):

        def teardown(error: BaseException | None, name: str = name) -> None:
            calls.append(f"{name} {error!r}")

        hooks.teardown_request(teardown)

    @hooks.route("/view")
    def view() -> str:
        calls.append("view")

        @after_this_request
        def once(response: Response) -> Response:
            calls.append("after this request")
            return response

        return "from the view"

    if isinstance(hooks, Blueprint):
        app.register_blueprint(hooks)
    return app


@pytest.mark.parametrize("layout", ["app", "answering", "blueprint"])
def test_request_hooks_run_as_flask_runs_them(layout: str) -> None:
    answers = []
    for app_class in (Flask, _GatewayFlask):
        calls: list[str] = []
        response = _hooked(app_class, layout, calls).test_client().get("/view")
        answers.append((calls, response.status_code, response.headers["X-Order"], response.data))
    ours, flasks = answers[1], answers[0]
    assert ours == flasks
    assert "after 2after 1" in ours[2]  # reversed, as Flask orders them
    assert ours[0][-2:] == ["teardown 2 None", "teardown 1 None"]


def test_the_gateway_app_has_only_hooks_of_its_own(client: FlaskClient) -> None:
    """Otherwise every request would take Flask's longer way (still correct, but dearer)."""
    app = client.application
    assert not app.url_value_preprocessors
    assert set(app.before_request_funcs) <= {None}
    assert set(app.after_request_funcs) <= {None}
    assert set(app.teardown_request_funcs) <= {None}


def _responses() -> list[Any]:
    """Responses of every kind the shortcut must tell apart, each as (label, a function
    giving its constructor's arguments): a generator body is consumed once, so every use
    gets arguments of its own."""
    made = [
        (f"bytes {status}", lambda status=status: {"response": b'{"a":1}', "status": status})
        for status in (101, 200, 204, 304, 404, 412)
    ]
    made += [
        ("text", lambda: {"response": "caf\u00e9"}),
        ("list of parts", lambda: {"response": [b"a", b"bc"]}),
        ("list with text", lambda: {"response": [b"a", "b\u00e9"]}),
        ("tuple", lambda: {"response": (b"a", b"b")}),
        ("generator", lambda: {"response": (part for part in [b"a", b"b"])}),
        (
            "location",
            lambda: {"response": b"x", "status": 302, "headers": {"Location": "/a b?c=\u00e9"}},
        ),
        (
            "content-location",
            lambda: {"response": b"x", "headers": {"Content-Location": "/\u00e9"}},
        ),
        ("passthrough", lambda: {"response": [b"x"], "direct_passthrough": True}),
        ("json", lambda: {"response": b"{}", "mimetype": "application/json"}),
    ]
    return [pytest.param(label, arguments, id=label) for label, arguments in made]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize(("label", "arguments"), _responses())
def test_a_response_reaches_the_server_as_werkzeug_hands_it(
    method: str, label: str, arguments: Callable[[], dict[str, Any]]
) -> None:
    handed = []
    for response_class in (Response, LeanResponse):
        closed: list[str] = []
        response = response_class(**arguments())
        response.call_on_close(lambda closed=closed: closed.append("closed"))
        started: list[Any] = []
        environ = EnvironBuilder(path="/query", method=method).get_environ()
        body = response(
            environ, lambda status, headers, started=started: started.append((status, headers))
        )
        sent = b"".join(body)
        getattr(body, "close", lambda: None)()
        handed.append((started, sent, closed))
    assert handed[1] == handed[0]
    if label != "passthrough":  # handed over as it is, without the response's close
        assert handed[0][2] == ["closed"]


def test_a_json_answer_takes_the_short_way() -> None:
    """The shortcut is taken where it pays: a JSON body the gateway built."""
    environ = EnvironBuilder(path="/query", method="POST").get_environ()
    body = json_response(b'{"result":[]}')(environ, lambda status, headers: None)
    assert not isinstance(body, ClosingIterator)
    assert b"".join(body) == b'{"result":[]}'


def _extra_hook(app: Flask) -> None:
    app.before_request(lambda: None)


def _receiver(app: Flask) -> None:
    request_started.connect(_ignore, app)


def _ignore(*_args: object, **_kwargs: object) -> None:
    return None


def _body_limit(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "headers", "change", "dispatched"),
    [
        ("POST", "/query", {}, None, 0),
        ("POST", "/transaction", {}, None, 0),
        ("POST", "/query", {"Accept": "application/x-ndjson"}, None, 1),  # a stream
        ("GET", "/openapi.json", {}, None, 1),  # no direct answer
        ("POST", "/query/", {}, None, 1),  # not the rule's path
        ("POST", "/query", {}, _extra_hook, 1),
        ("POST", "/query", {}, _receiver, 1),
        ("POST", "/query", {}, _body_limit, 1),
    ],
)
def test_a_direct_answer_leaves_out_flask_dispatch_only_when_nothing_needs_it(
    make_client: Callable[..., FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    headers: dict[str, str],
    change: Callable[[Flask], None] | None,
    dispatched: int,
) -> None:
    """With the server ending the body's stream, POST /query and /transaction skip Flask's
    dispatch (every test of a client also runs both ways: conftest.DISPATCH); anything the
    skip would leave out sends the request Flask's way."""
    client = _dispatching(make_client(), "direct")
    if change is not None:
        change(client.application)
    calls: list[None] = []
    full_dispatch = Flask.full_dispatch_request

    def counted(self: Flask) -> Response:
        calls.append(None)
        return full_dispatch(self)

    monkeypatch.setattr(Flask, "full_dispatch_request", counted)
    try:
        answer = client.open(path, method=method, json={"query": "select 1"}, headers=headers)
    finally:
        request_started.disconnect(_ignore)
    assert len(calls) == dispatched
    assert answer.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/query", {"query": "select 1"}),
        ("/query", {"query": "select 1", "meta": True}),
        ("/transaction", {"statements": [{"query": "select 1"}, {"query": "select 2"}]}),
    ],
)
def test_a_direct_answer_is_the_answer_flask_gives(
    make_client: Callable[..., FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict,
) -> None:
    """Status, headers (names, values and order) and body, both ways (conftest.DISPATCH)."""
    result = StatementResult(b'[{"a":1}]', [{"name": "a", "type": "integer"}], 1, "SELECT 1", 0.5)
    monkeypatch.setattr(Database, "query", lambda *_args: result)
    monkeypatch.setattr(Database, "transaction", lambda _self, statements, *_args: [result] * 2)
    answers = {}
    for way in DISPATCH:
        client = _dispatching(make_client(), way)
        answer = client.post(path, json=body, headers={"X-Request-ID": "same-id"})
        answers[way] = (answer.status, answer.headers.to_wsgi_list(), answer.get_data())
    assert answers["direct"] == answers["flask"]
    assert answers["direct"][0] == "200 OK"


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "refused"])
def test_a_direct_answer_is_logged_and_counted_as_by_flask(
    make_client: Callable[..., FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fails: bool,
) -> None:
    """The access line (but its time and duration) and the request counter, both ways."""
    result = StatementResult(b"[]", None, 0, "SELECT 0", 0.1)
    refusal = ApiError(404, "relation does not exist", sqlstate="42P01")

    def query(*_args: object) -> StatementResult:
        if fails:
            raise refusal
        return result

    monkeypatch.setattr(Database, "query", query)
    logger = logging.getLogger("app")
    monkeypatch.setattr(logger, "level", logging.INFO)
    status = "404" if fails else "200"
    lines, counted = {}, {}
    for way in DISPATCH:
        client = _dispatching(make_client(), way)
        before = REGISTRY.get_sample_value(
            "gateway_requests_total", {"route": "/query", "status": status}
        )
        capsys.readouterr()
        client.post("/query", json={"query": "select 1"}, headers={"X-Request-ID": "r"}).close()
        after = REGISTRY.get_sample_value(
            "gateway_requests_total", {"route": "/query", "status": status}
        )
        counted[way] = after - (before or 0.0)
        err = capsys.readouterr().err.splitlines()
        access = [json.loads(line) for line in err if '"message":"request"' in line]
        for line in access:
            del line["time"], line["duration_ms"]
        lines[way] = access
    assert lines["direct"] == lines["flask"] and len(lines["direct"]) == 1
    assert lines["direct"][0]["status"] == int(status)
    assert lines["direct"][0].get("sqlstate") == ("42P01" if fails else None)
    assert counted == {"direct": 1.0, "flask": 1.0}


def _dispatching(client: FlaskClient, way: str) -> FlaskClient:
    """The client sending its requests one way of conftest.DISPATCH, whatever its fixture's."""
    for key in {key for environ in DISPATCH.values() for key in environ}:
        client.environ_base.pop(key, None)
    client.environ_base.update(DISPATCH[way])
    return client
