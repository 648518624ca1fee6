"""Every JSON body the gateway answers with, built in this one place.

The data layer hands over plain data (StatementResult, ApiError, line bytes); these
functions give it the contract's shape: `{"result": ...}`, the meta fields, `{"results":
[...]}`, `{"error": {...}}`, the NDJSON lines and the operations endpoints' bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from flask import Response

from app import randomness
from app.encode import dumps
from app.errors import ApiError
from app.transaction import StatementResult

NDJSON = "application/x-ndjson"


class LeanResponse(Response):
    """Flask's response, handed to the WSGI server as werkzeug would hand it, without
    werkzeug's per-answer copy of the headers and its two iterator wrappers when they would
    change nothing (about 10 us a request, docs/benchmarks.md "Per-request costs"): a body
    held whole as bytes, its Content-Length set, a status that has a body, no Location or
    Content-Location to rewrite, and not an answer to HEAD."""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self._sent_as_is(environ):
            return super().__call__(environ, start_response)
        start_response(self.status, self.headers.to_wsgi_list())
        return _Body(self.response, self.close)

    def _sent_as_is(self, environ: dict[str, Any]) -> bool:
        status = self.status_code
        if (
            status < 200
            or status in (204, 304)
            or self.direct_passthrough
            or environ["REQUEST_METHOD"] == "HEAD"
            or not isinstance(self.response, list)
            or any(type(part) is not bytes for part in self.response)
        ):
            return False
        names = {name.lower() for name, _ in self.headers}
        return "content-length" in names and not names & _REWRITTEN


# Headers werkzeug rewrites on the way out (made absolute or URL-quoted).
_REWRITTEN = frozenset({"location", "content-location"})


class _Body:
    """A held body and the response's `close` (the WSGI server calls it once sent)."""

    __slots__ = ("_parts", "close")

    def __init__(self, parts: list[bytes], close: Callable[[], None]) -> None:
        self._parts = parts
        self.close = close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._parts)


def json_answer(
    body: bytes,
    headers: list[tuple[str, str]],
    start_response: Callable[..., Any],
    close: Callable[[], None],
) -> Iterable[bytes]:
    """A 200 JSON answer handed to the WSGI server as `json_response(body)` would hand it
    (the same status line and headers, in the same order, `headers` after them), without the
    response object: for app._GatewayFlask's direct answers. `close` runs once it is sent."""
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers],
    )
    return _Body([body], close)


def new_request_id() -> str:
    """An answer's X-Request-ID when its request brought none usable: 32 random hex
    digits (as a UUID4's hex, without building the UUID)."""
    return randomness.token_hex(16)


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return LeanResponse(body, status=status, mimetype="application/json", headers=headers)


def result_body(result: StatementResult, meta: bool) -> bytes:
    if not meta:
        return b'{"result":' + result.payload + b"}"
    return orjson.dumps(
        {
            "result": orjson.Fragment(result.payload),
            "columns": result.columns,
            "rowcount": result.rowcount,
            "command": result.command,
            "truncated": False,  # results are never cut short: over a limit is a 413
            "duration_ms": round(result.duration_ms, 3),
        }
    )


def transaction_body(results: Iterable[StatementResult], meta: bool) -> bytes:
    return b'{"results":[' + b",".join(result_body(r, meta) for r in results) + b"]}"


def error_document(error: ApiError) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "message": error.message,
        "sqlstate": error.sqlstate,
        "detail": error.detail,
        "hint": error.hint,
        "position": error.position,
    }
    if error.statement is not None:
        fields["statement"] = error.statement
    return {"error": fields}


def error_response(error: ApiError) -> Response:
    return json_response(dumps(error_document(error)), error.status, error.headers)


def ndjson(lines: Iterable[bytes | ApiError]) -> Iterator[bytes]:
    """The stream's lines; an error after rows were sent becomes its last line."""
    for line in lines:
        yield line if isinstance(line, bytes) else dumps(error_document(line)) + b"\n"


def status_response(status: str, code: int = 200) -> Response:
    return json_response(dumps({"status": status}), code)
