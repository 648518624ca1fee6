"""Every error a Flask app of the gateway answers is the contract's JSON error body.

Installed on the data app and on the operations app; the server's own answers (a request it
could not parse) are written in the same shape by app.http1.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.errors import GENERIC_MESSAGE, ApiError
from app.responses import error_response

log = logging.getLogger("app")


def install(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        g.sqlstate = error.sqlstate
        return error_response(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        message = f"{error.name}: {error.description}" if error.description else error.name
        return api_error(ApiError(error.code or 500, message, headers=headers))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return api_error(ApiError(500, GENERIC_MESSAGE))
