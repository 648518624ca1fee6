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
from flask.signals import (
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    request_finished,
    request_started,
    request_tearing_down,
)
from werkzeug.routing import MapAdapter

from app import errorpages, metrics, wait
from app.admission import Admission
from app.db import Database
from app.jsonlog import access_line, lean_records
from app.lifecycle import LIFECYCLE, Lifecycle
from app.responses import LeanResponse, json_answer, new_request_id
from app.routes import Direct, bp, reads_server_input
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
        self._direct: dict[tuple[str, str], tuple[str, Direct]] | None = None
        # The request hooks the factory installs, which a direct answer does itself.
        self.own_hooks: tuple[dict, dict] = ({}, {})

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Flask's; but a request that a view marked `direct` (app.routes) answers whole is
        answered by that view's answer function with the factory's request hooks' work done
        here, without Flask's contexts, routing, hooks and signals: in one process (the
        database stubbed) they took about 90 of a /query's 110 us (docs/benchmarks.md,
        "A direct answer: Flask's request machinery left out"). Only while nothing that this
        skips is in use (`_shortcut`); an error is answered by the app's error handlers, as
        Flask would."""
        route = self._direct_route(environ)
        if route is None:
            return super().wsgi_app(environ, start_response)
        rule, direct = route
        lifecycle: Lifecycle = self.extensions["pg_gateway.lifecycle"]
        lifecycle.enter()
        started, request_id = time.perf_counter(), _request_id(environ)
        try:
            body, sqlstate = self._answer_directly(direct, environ, request_id)
        except BaseException:
            lifecycle.leave()  # no answer made here: none to log or count
            raise
        fields = (environ["REQUEST_METHOD"], environ["PATH_INFO"], rule, sqlstate)
        if isinstance(body, Response):  # an error, as the app's error handlers answer it
            return _finish(lifecycle, body, request_id, started, fields)(environ, start_response)
        closing = _recording(lifecycle, rule, started, _access_fields(request_id, 200, fields))
        return json_answer(body, [("X-Request-ID", request_id)], start_response, closing)

    def _answer_directly(
        self, direct: Direct, environ: dict[str, Any], request_id: str
    ) -> tuple[bytes | Response, str | None]:
        """The view's direct answer, or its error answered by the app's error handlers; and
        the SQLSTATE the access line gives."""
        self._got_first_request = True
        try:
            # Not kept in the environ (werkzeug's populate_request): no reference cycle to
            # collect, which Flask breaks by hand when it pops its context.
            current = self.request_class(environ, populate_request=False)
            return direct.answer(current, self), None
        except Exception as error:
            return self._handled(environ, request_id, error)

    def _direct_route(self, environ: dict[str, Any]) -> tuple[str, Direct] | None:
        """The rule and `direct` answer of a request answered without Flask's dispatch."""
        if self._direct is None:  # the URL map is complete by the first request
            self._direct = {
                (method, rule.rule): (rule.rule, direct)
                for rule in self.url_map.iter_rules()
                if not rule.arguments
                and (direct := getattr(self.view_functions[rule.endpoint], "direct", None))
                for method in rule.methods or ()
            }
        route = self._direct.get((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if route is None or not route[1].takes(environ) or not self._shortcut(environ):
            return None
        return route

    def _shortcut(self, environ: dict[str, Any]) -> bool:
        """Whether Flask's dispatch would do nothing a direct answer leaves out: only the
        factory's request hooks, no teardown function, no signal receiver, no URL value
        preprocessor, no host matching (as `create_url_adapter`), no upgrade, and the body
        read from the server's own input (which needs no request context)."""
        config = self.config
        return (
            reads_server_input(environ, self)
            and "HTTP_UPGRADE" not in environ
            and config["SERVER_NAME"] is None
            and config["TRUSTED_HOSTS"] is None
            and not self.url_map.host_matching
            and not self.subdomain_matching
            and (self.before_request_funcs, self.after_request_funcs) == self.own_hooks
            and not self.teardown_request_funcs
            and not self.teardown_appcontext_funcs
            and not self.url_value_preprocessors
            and not any(signal.receivers for signal in _DISPATCH_SIGNALS)
        )

    def _handled(
        self, environ: dict[str, Any], request_id: str, error: Exception
    ) -> tuple[Response, str | None]:
        """A direct answer's error answered by the app's error handlers, in a request
        context of its own (as the factory's hooks would have set it up), and its SQLSTATE."""
        with self.request_context(environ):
            context = g._get_current_object()
            context.request_id, context.sqlstate = request_id, None
            response = self.make_response(self.handle_user_exception(error))
            return response, context.sqlstate

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


def _install_hooks(app: _GatewayFlask, lifecycle: Lifecycle) -> None:
    @app.before_request
    def start_request() -> None:
        lifecycle.enter()
        context = g._get_current_object()
        context.started = time.perf_counter()
        context.request_id = _request_id(request.environ)
        context.sqlstate = None

    @app.after_request
    def finish_request(response: Response) -> Response:
        context, current = g._get_current_object(), request._get_current_object()
        route = current.url_rule.rule if current.url_rule else "unmatched"
        fields = (current.method, current.path, route, context.sqlstate)
        return _finish(lifecycle, response, context.request_id, context.started, fields)

    app.own_hooks = ({None: [start_request]}, {None: [finish_request]})


# Signals Flask's dispatch sends for every request, which a direct answer does not.
_DISPATCH_SIGNALS = (
    request_started,
    request_finished,
    request_tearing_down,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)


def _request_id(environ: dict[str, Any]) -> str:
    """The client's X-Request-ID when usable, else a new one."""
    presented = environ.get("HTTP_X_REQUEST_ID", "")
    return presented if _REQUEST_ID.match(presented) else new_request_id()


def _finish(
    lifecycle: Lifecycle,
    response: Response,
    request_id: str,
    started: float,
    fields: tuple[str, str, str, str | None],
) -> Response:
    """The answer's X-Request-ID, and its access line and metrics once it is sent;
    `fields` are the request's method, path, route and SQLSTATE."""
    response.headers["X-Request-ID"] = request_id
    line = _access_fields(request_id, response.status_code, fields)
    response.call_on_close(_recording(lifecycle, fields[2], started, line))
    return response


def _access_fields(
    request_id: str, status: int, fields: tuple[str, str, str, str | None]
) -> dict[str, Any]:
    """The access line's fields, captured before the answer is sent (the request context,
    where there is one, is gone by then)."""
    method, path, _route, sqlstate = fields
    return {
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        "sqlstate": sqlstate,
    }


def _recording(lifecycle: Lifecycle, route: str, started: float, line: dict) -> Callable[[], None]:
    """What runs once the answer is sent (`_record`)."""
    return lambda: _record(lifecycle, route, started, line)


def _record(lifecycle: Lifecycle, route: str, started: float, fields: dict) -> None:
    """Runs once the body has been sent, so streamed responses are timed in full."""
    duration = time.perf_counter() - started
    lifecycle.leave()
    metrics.record_request(route, fields["status"], duration)
    access_line(log, {**fields, "duration_ms": round(duration * 1000, 3)})
