"""HTTP endpoints: they validate, authenticate and hand over to `Database`.

Request flow: routes (this module) -> db (transaction, limits) -> encode (values to JSON).
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request

from app.auth import role_for_request
from app.db import Database
from app.encode import dumps
from app.errors import ApiError
from app.lifecycle import Lifecycle
from app.metrics import render
from app.openapi import openapi_document
from app.settings import Settings
from app.validation import parse_json_body, parse_query, parse_transaction

READY_TIMEOUT_S = 1.0
NDJSON = "application/x-ndjson"

# No automatic OPTIONS: Flask would answer it with an empty HTML body; 405 JSON instead.
bp = Blueprint("gateway", __name__)


def _database() -> Database:
    return current_app.extensions["pg_gateway.db"]


def _settings() -> Settings:
    return current_app.extensions["pg_gateway.settings"]


def _lifecycle() -> Lifecycle:
    return current_app.extensions["pg_gateway.lifecycle"]


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


def _json_body() -> dict:
    if request.mimetype != "application/json":
        raise ApiError(415, "the request body must be JSON sent as Content-Type: application/json")
    return parse_json_body(request.get_data(cache=False))


def _wants_ndjson() -> bool:
    return NDJSON in request.headers.get("Accept", "")


@bp.post("/query", provide_automatic_options=False)
def query() -> Response:
    role = role_for_request(_settings(), request.headers.get("Authorization"))
    body = _json_body()
    parsed = parse_query(body, _settings())
    if _wants_ndjson():
        lines: Iterator[bytes] = _database().stream(parsed.statement, parsed.options, role)
        return Response(lines, mimetype=NDJSON)
    result = _database().query(parsed.statement, parsed.options, role)
    return json_response(result.body(parsed.options.meta))


@bp.post("/transaction", provide_automatic_options=False)
def transaction() -> Response:
    role = role_for_request(_settings(), request.headers.get("Authorization"))
    body = _json_body()
    parsed = parse_transaction(body, _settings())
    results = _database().transaction(parsed.statements, parsed.options, role)
    meta = parsed.options.meta
    return json_response(b'{"results":[' + b",".join(r.body(meta) for r in results) + b"]}")


@bp.get("/healthz", provide_automatic_options=False)
def healthz() -> Response:
    return json_response(b'{"status":"ok"}')


@bp.get("/readyz", provide_automatic_options=False)
def readyz() -> Response:
    if _lifecycle().draining:
        return json_response(dumps({"status": "draining"}), 503)
    if not _database().ping(READY_TIMEOUT_S):
        return json_response(dumps({"status": "database unavailable"}), 503)
    return json_response(b'{"status":"ready"}')


@bp.get("/metrics", provide_automatic_options=False)
def metrics() -> Response:
    text, content_type = render()
    return Response(text, content_type=content_type)


@bp.get("/openapi.json", provide_automatic_options=False)
def openapi() -> Response:
    return json_response(dumps(openapi_document()))
