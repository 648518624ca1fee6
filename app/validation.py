"""Turn request bodies into typed requests, answering 400 with a precise message otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from psycopg2.extras import Json

from app.errors import ApiError
from app.settings import Settings

Params = list[Any] | dict[str, Any] | None
MAX_STATEMENTS = 1000
MAX_PARAM_DEPTH = 32  # PostgreSQL arrays have at most 6 dimensions anyway


@dataclass(frozen=True)
class Statement:
    query: str
    params: Params


@dataclass(frozen=True)
class Options:
    """Per-request limits, already capped by the server's maximums."""

    timeout_ms: int
    max_rows: int
    meta: bool
    read_only: bool


@dataclass(frozen=True)
class QueryRequest:
    statement: Statement
    options: Options


@dataclass(frozen=True)
class TransactionRequest:
    statements: list[Statement]
    options: Options


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads given these options builds a decoder and its scanner at every call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Parse strictly: numbers with fractions stay exact Decimals, NaN/Infinity are refused.
    The bytes are decoded as json.loads decodes them (UTF-8, -16 or -32, a BOM allowed)."""
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"malformed JSON: {error}") from None
    except RecursionError:
        raise bad_request("malformed JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _check_fields(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r} in {where}; allowed: {sorted(allowed)}")


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"'{name}' must be a positive integer")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false")
    return value


def _exact_number(value: Any) -> orjson.Fragment:
    """A fraction parsed as Decimal goes back into JSON digit for digit."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=_exact_number).decode()


def _text(value: str, where: str) -> str:
    """JSON may spell a lone surrogate (\\ud800), which no UTF-8 text can hold."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise bad_request(
            f"{where} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
        ) from None
    return value


def _adapt(value: Any, depth: int = 0) -> Any:
    """JSON objects become json parameters (their numbers exact); arrays become PostgreSQL
    arrays; every string, keys included, must be text."""
    if depth > MAX_PARAM_DEPTH:
        raise bad_request(f"'params' are nested deeper than {MAX_PARAM_DEPTH} levels")
    if isinstance(value, str):
        return _text(value, "'params'")
    if isinstance(value, dict):
        for key, item in value.items():
            _text(key, "'params'")
            _adapt(item, depth + 1)
        return Json(value, dumps=_json_text)
    if isinstance(value, list):
        return [_adapt(item, depth + 1) for item in value]
    return value


def _statement(body: dict[str, Any], where: str) -> Statement:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise bad_request(f"'query' in {where} must be a non-empty string")
    _text(query, f"'query' in {where}")
    params = body.get("params")
    if params is None:
        return Statement(query, None)
    if isinstance(params, list):
        return Statement(query, [_adapt(v) for v in params])
    if isinstance(params, dict):
        return Statement(query, {_text(k, "'params'"): _adapt(v) for k, v in params.items()})
    raise bad_request(f"'params' in {where} must be an array or an object")


def _options(body: dict[str, Any], settings: Settings, read_only: bool) -> Options:
    """`read_only`: asked for by the request, or the token's role is read-only."""
    timeout = _positive_int(body, "timeout_ms") or settings.statement_timeout_ms
    max_rows = _positive_int(body, "max_rows") or settings.max_rows
    return Options(
        timeout_ms=min(timeout, settings.max_statement_timeout_ms),
        max_rows=min(max_rows, settings.max_rows),
        meta=_bool(body, "meta"),
        read_only=read_only,
    )


# The fields each body may hold (the OpenAPI document's request schemas are held to these).
STATEMENT_FIELDS = frozenset({"query", "params"})
OPTION_FIELDS = frozenset({"timeout_ms", "max_rows", "meta"})
QUERY_FIELDS = STATEMENT_FIELDS | OPTION_FIELDS
TRANSACTION_FIELDS = frozenset({"statements", "read_only"}) | OPTION_FIELDS


def parse_query(body: dict[str, Any], settings: Settings, role: str | None = None) -> QueryRequest:
    _check_fields(body, QUERY_FIELDS, "the request")
    read_only = settings.role_is_read_only(role)
    return QueryRequest(_statement(body, "the request"), _options(body, settings, read_only))


def parse_transaction(
    body: dict[str, Any], settings: Settings, role: str | None = None
) -> TransactionRequest:
    _check_fields(body, TRANSACTION_FIELDS, "the request")
    items = body.get("statements")
    if not isinstance(items, list) or not items:
        raise bad_request("'statements' must be a non-empty array")
    if len(items) > MAX_STATEMENTS:
        raise bad_request(f"'statements' holds more than {MAX_STATEMENTS} entries")
    statements = []
    for index, item in enumerate(items):
        where = f"statements[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object with 'query' and optional 'params'")
        _check_fields(item, STATEMENT_FIELDS, where)
        statements.append(_statement(item, where))
    read_only = _bool(body, "read_only") or settings.role_is_read_only(role)
    options = _options(body, settings, read_only)
    return TransactionRequest(statements, options)
