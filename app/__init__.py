"""The PostgreSQL query gateway: SQL over HTTP, answered in JSON.

`create_app()` is the application factory used by gunicorn (`python -m app`), by the
tests and by `flask --app app run`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response, g, request
from flask.globals import request_ctx
from flask.sansio.scaffold import _sentinel
from flask.sessions import NullSession, SessionInterface
from flask.signals import request_tearing_down
from werkzeug.routing import MapAdapter

from app import errorpages, metrics, wait
from app.admission import Admission
from app.db import Database
from app.jsonlog import access_line, lean_records
from app.lifecycle import LIFECYCLE, Lifecycle
from app.responses import LeanResponse, new_request_id
from app.routes import bp
from app.settings import Settings, load_settings

log = logging.getLogger("app")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_APP_ONLY = frozenset({None})  # the key of hooks registered on the app, not a blueprint


class _NoSessions(SessionInterface):
    """The gateway reads and sets no cookie: each request gets the one shared empty session
    (which refuses writes), not a signing-key check and a new NullSession per request."""

    _none = NullSession()

    def open_session(self, app: Flask, request: object) -> NullSession:
        return self._none

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


class _GatewayFlask(Flask):
    """Flask, less costs of every request that this app's routes never need (measured in
    docs/benchmarks.md, "Per-request costs")."""

    response_class = LeanResponse

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._plain: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer, remembered for a plain function the app holds itself (a view, a
        request hook): Flask asks `inspect` for the view and each hook at every request. A
        function made per request (an `after_this_request`) is asked about and not kept."""
        try:
            if func in self._plain:
                return func
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if sync is func and self._holds(func):
            self._plain.add(func)
        return sync

    def _holds(self, func: Callable[..., Any]) -> bool:
        registries = (self.before_request_funcs, self.after_request_funcs)
        return func in self.view_functions.values() or any(
            func in funcs for registry in registries for funcs in registry.values()
        )

    def preprocess_request(self) -> Any:
        """Flask's, for an app whose request hooks are all the app's own: Flask works out the
        request's blueprints (three look-ups through its context proxies) to find theirs."""
        if self.url_value_preprocessors or not self.before_request_funcs.keys() <= _APP_ONLY:
            return super().preprocess_request()
        for before in self.before_request_funcs.get(None, ()):
            answer = self.ensure_sync(before)()
            if answer is not None:
                return answer
        return None

    def process_response(self, response: Response) -> Response:
        """Flask's, for an app whose after-request hooks are all the app's own (as above)."""
        if not self.after_request_funcs.keys() <= _APP_ONLY:
            return super().process_response(response)
        context = request_ctx._get_current_object()  # type: ignore[attr-defined]
        for after in context._after_request_functions:
            response = self.ensure_sync(after)(response)
        for after in reversed(self.after_request_funcs.get(None, ())):
            response = self.ensure_sync(after)(response)
        if not self.session_interface.is_null_session(context._session):
            self.session_interface.save_session(self, context._session, response)
        return response

    def do_teardown_request(self, exc: BaseException | None = _sentinel) -> None:  # type: ignore[assignment]
        """Flask's, for an app whose teardown functions are all the app's own (as above)."""
        if not self.teardown_request_funcs.keys() <= _APP_ONLY:
            return super().do_teardown_request(exc)
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        for func in reversed(self.teardown_request_funcs.get(None, ())):
            self.ensure_sync(func)(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
        return None

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """The URL map bound to the request's host and path as the request holds them.
        Flask reads and checks the Host header twice a request (here, then in werkzeug's
        `bind_to_environ`), for host and subdomain matching, SERVER_NAME, trusted hosts and
        WebSocket upgrades, none of which this app uses: with any of them configured, or a
        request asking for an upgrade, Flask's own way."""
        config = self.config
        if request is None and config["SERVER_NAME"] is None:
            return None  # Flask's answer for an app context of its own: no adapter
        if (
            request is None
            or self.url_map.host_matching
            or self.subdomain_matching
            or config["SERVER_NAME"] is not None
            or config["TRUSTED_HOSTS"] is not None
            or "HTTP_UPGRADE" in request.environ
        ):
            return super().create_url_adapter(request)
        return MapAdapter(
            self.url_map,
            request.host.lower(),
            request.root_path,
            self.url_map.default_subdomain or "",
            request.scheme,
            request.path,
            request.method,
            request.environ.get("QUERY_STRING", ""),
        )


def create_app(settings: Settings | None = None, lifecycle: Lifecycle = LIFECYCLE) -> Flask:
    settings = settings or load_settings(os.environ)
    wait.install()
    lean_records()
    app = _GatewayFlask(__name__)
    app.session_interface = _NoSessions()
    database = Database(settings)
    app.extensions["pg_gateway.settings"] = settings
    app.extensions["pg_gateway.db"] = database
    app.extensions["pg_gateway.lifecycle"] = lifecycle
    app.extensions["pg_gateway.admission"] = Admission()
    app.register_blueprint(bp)
    _install_hooks(app, lifecycle)
    errorpages.install(app)
    if not settings.auth_required:
        log.warning("API_TOKENS is empty: /query and /transaction accept unauthenticated requests")
    threading.Thread(
        target=database.logins.main.fill, args=(settings.pool_min,), daemon=True
    ).start()
    return app


def _install_hooks(app: Flask, lifecycle: Lifecycle) -> None:
    @app.before_request
    def start_request() -> None:
        lifecycle.enter()
        context = g._get_current_object()
        context.started = time.perf_counter()
        presented = request.environ.get("HTTP_X_REQUEST_ID", "")
        context.request_id = presented if _REQUEST_ID.match(presented) else new_request_id()
        context.sqlstate = None

    @app.after_request
    def finish_request(response: Response) -> Response:
        context, current = g._get_current_object(), request._get_current_object()
        response.headers["X-Request-ID"] = context.request_id
        # The request context is gone by the time the body has been sent: capture now.
        fields = {
            "request_id": context.request_id,
            "method": current.method,
            "path": current.path,
            "status": response.status_code,
            "sqlstate": context.sqlstate,
        }
        route = current.url_rule.rule if current.url_rule else "unmatched"
        started = context.started
        response.call_on_close(lambda: _record(lifecycle, route, started, fields))
        return response


def _record(lifecycle: Lifecycle, route: str, started: float, fields: dict) -> None:
    """Runs once the body has been sent, so streamed responses are timed in full."""
    duration = time.perf_counter() - started
    lifecycle.leave()
    metrics.record_request(route, fields["status"], duration)
    access_line(log, {**fields, "duration_ms": round(duration * 1000, 3)})
