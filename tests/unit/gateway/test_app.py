"""The gateway's Flask subclass: its two shortcuts answer as Flask's own ways do."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException


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


def test_ensure_sync_answers_once_per_function_and_keeps_no_dead_one(client: FlaskClient) -> None:
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
    kept = len(app._plain)
    for _ in range(100):  # a function made per request, as after_this_request takes
        app.ensure_sync(lambda response: response)
    gc.collect()
    assert len(app._plain) == kept
