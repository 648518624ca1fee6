"""HTTP endpoints of the data port: they authenticate, take the token's share (app.admission),
read and validate the body, and hand over to `Database`. Health, readiness and metrics are
on a port of their own (app.operations).

Request flow: routes (this module) -> db (transaction, limits) -> responses (JSON bodies).
A body must arrive within BODY_TIMEOUT_S (408) and hold at most MAX_BODY_BYTES (413, also
for chunked bodies); an oversized one is read and dropped up to a bound first, so that a
client still sending gets the 413 rather than a broken pipe.

A view whose answer is a whole JSON body says how to make it from the request and the app
alone (`direct`): app._GatewayFlask answers such requests without Flask's request machinery
when nothing needs it, and the view itself calls the same function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Generic, NamedTuple, TypeVar

import gevent
from flask import Blueprint, Flask, Request, Response, current_app, request
from gevent import monkey
from werkzeug.wsgi import get_content_length

from app.admission import Admission
from app.auth import token_for_request
from app.db import Database
from app.encode import dumps
from app.errors import ApiError
from app.openapi import openapi_document
from app.responses import NDJSON, json_response, ndjson, result_body, transaction_body
from app.settings import Settings
from app.validation import (
    QueryRequest,
    TransactionRequest,
    parse_json_body,
    parse_query,
    parse_transaction,
)

READ_CHUNK = 64 * 1024
# An oversized body is read and dropped up to this much more, within this time.
DISCARD_BYTES = 8 * 1024 * 1024
DISCARD_TIMEOUT_S = 2.0

# No automatic OPTIONS: Flask would answer it with an empty HTML body; 405 JSON instead.
bp = Blueprint("gateway", __name__)


Parsed = TypeVar("Parsed", QueryRequest, TransactionRequest)


class _Arrival(NamedTuple, Generic[Parsed]):
    """A SQL request authenticated, read, validated and admitted."""

    parsed: Parsed
    role: str | None
    database: Database
    release: Callable[[], None]  # gives the token's share back


def _arrive(
    current: Request, app: Flask, parse: Callable[[dict, Settings, str | None], Parsed]
) -> _Arrival[Parsed]:
    """What both SQL routes do first. The request and the app are passed in, not looked up
    through Flask's context proxies (about 1 us each; timeit: 1.1-1.2 us against 0.06 us on
    the object itself), so that a request answered directly (`direct`) needs no context.
    Headers are read from the environ, where werkzeug's header view would find them after a
    cached-property look-up and a key rewrite."""
    environ, extensions = current.environ, app.extensions
    settings: Settings = extensions["pg_gateway.settings"]
    token = token_for_request(settings, environ.get("HTTP_AUTHORIZATION"))
    role = token.role if token else None
    content_type = environ.get("CONTENT_TYPE")  # exactly that, or werkzeug's parse
    if content_type != "application/json" and current.mimetype != "application/json":
        raise ApiError(415, "the request body must be JSON sent as Content-Type: application/json")
    parsed = parse(parse_json_body(_body(current, app, settings)), settings, role)
    admission: Admission = extensions["pg_gateway.admission"]
    release = admission.admit(token, current.remote_addr or "")
    return _Arrival(parsed, role, extensions["pg_gateway.db"], release)


def reads_server_input(environ: dict, app: Flask) -> bool:
    """Whether the body is read from the server's own `wsgi.input`: the server ends it at
    the body's end (app.http1 and gunicorn say so with `wsgi.input_terminated`) and Flask
    sets no MAX_CONTENT_LENGTH, when werkzeug's `Request.stream` hands over that very
    stream, after its cached property's look-ups (with `content_length`'s, about 15 us of a
    request in one process, docs/benchmarks.md)."""
    return "wsgi.input_terminated" in environ and app.config["MAX_CONTENT_LENGTH"] is None


def _input(current: Request, app: Flask) -> IO[bytes]:
    """The body's stream: the server's own (`reads_server_input`), otherwise werkzeug's."""
    if reads_server_input(current.environ, app):
        return current.environ["wsgi.input"]
    return current.stream


def _read(stream: IO[bytes], size: int, deadline: float) -> bytes:
    """One read of the body that gives up at the deadline. One read may take several
    receives (a drip of chunk framing), so a socket timeout would not end a drip: under the
    gevent worker the whole read is bounded instead (not needed for what the server holds
    already)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    if not monkey.is_module_patched("socket") or _buffered(stream):
        return stream.read(size)
    with gevent.Timeout(remaining, TimeoutError):
        return stream.read(size)


def _buffered(stream: IO[bytes]) -> bool:
    """Whether the server holds what a read will return (app.http1's `wsgi.input` says)."""
    buffered = getattr(stream, "buffered", None)
    return buffered is not None and buffered()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the server's MAX_BODY_BYTES ({limit})")


def _body(current: Request, app: Flask, settings: Settings) -> bytes:
    """The whole body, within the size and time limits."""
    limit = settings.max_body_bytes
    # With it, no read more to learn that the body ended. werkzeug's own parse (what
    # `Request.content_length` gives), called at once.
    expected = get_content_length(current.environ)
    stream = _input(current, app)
    if expected is not None and expected > limit:
        if current.environ.get("HTTP_EXPECT", "").lower() != "100-continue":
            _discard(stream, DISCARD_BYTES + expected - limit)
        # else: the client waits for a 100 Continue before its body; it gets the 413 instead
        raise _too_large(limit)
    deadline = time.monotonic() + settings.body_timeout_s
    chunks, size = [], 0
    try:
        while size != expected and (
            chunk := _read(stream, min(READ_CHUNK, limit + 1 - size), deadline)
        ):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                _discard(stream, DISCARD_BYTES)
                raise _too_large(limit)
    except (TimeoutError, OSError):
        raise ApiError(
            408,
            f"the request body did not arrive within BODY_TIMEOUT_S ({settings.body_timeout_s} s)",
        ) from None
    return b"".join(chunks)


def _discard(stream: IO[bytes], most: int) -> None:
    """Read and drop what the client is still sending, up to `most` bytes and a short
    time; after the answer the server drops what still comes for a moment, then closes
    (app.http1)."""
    deadline = time.monotonic() + DISCARD_TIMEOUT_S
    try:
        while most > 0 and (chunk := _read(stream, min(READ_CHUNK, most), deadline)):
            most -= len(chunk)
    except (TimeoutError, OSError):
        return


class Direct(NamedTuple):
    """A view's answer made without Flask's request machinery (app._GatewayFlask.wsgi_app
    dispatches to it): the whole JSON body of a 200, from the request and the app; any
    error is raised for Flask's error handlers."""

    answer: Callable[[Request, Flask], bytes]
    takes: Callable[[dict], bool]  # whether a request (its environ) is answered so


def direct(answer: Callable[[Request, Flask], bytes], takes: Callable[[dict], bool]) -> Callable:
    """Marks a view whose answer `answer` makes alone for the requests `takes` accepts."""

    def mark(view: Callable[..., Response]) -> Callable[..., Response]:
        view.direct = Direct(answer, takes)  # type: ignore[attr-defined]
        return view

    return mark


def _answered_whole(environ: dict) -> bool:
    return NDJSON not in environ.get("HTTP_ACCEPT", "")


def _always(_environ: dict) -> bool:
    return True


def query_answer(current: Request, app: Flask) -> bytes:
    """The body of a /query answered whole (not streamed)."""
    parsed, role, database, release = _arrive(current, app, parse_query)
    try:
        result = database.query(parsed.statement, parsed.options, role)
    finally:
        release()
    return result_body(result, parsed.options.meta)


def transaction_answer(current: Request, app: Flask) -> bytes:
    """The body of a /transaction."""
    parsed, role, database, release = _arrive(current, app, parse_transaction)
    try:
        results = database.transaction(parsed.statements, parsed.options, role)
    finally:
        release()
    return transaction_body(results, parsed.options.meta)


@bp.post("/query", provide_automatic_options=False)
@direct(query_answer, _answered_whole)
def query() -> Response:
    current, app = request._get_current_object(), current_app._get_current_object()
    if _answered_whole(current.environ):
        return json_response(query_answer(current, app))
    parsed, role, database, release = _arrive(current, app, parse_query)
    try:
        lines = database.stream(parsed.statement, parsed.options, role)
    except BaseException:
        release()
        raise
    response = Response(ndjson(lines), mimetype=NDJSON)
    response.call_on_close(release)  # the share is held until the stream is sent
    return response


@bp.post("/transaction", provide_automatic_options=False)
@direct(transaction_answer, _always)
def transaction() -> Response:
    current, app = request._get_current_object(), current_app._get_current_object()
    return json_response(transaction_answer(current, app))


@bp.get("/openapi.json", provide_automatic_options=False)
def openapi() -> Response:
    return json_response(dumps(openapi_document()))
