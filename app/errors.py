"""Errors as the HTTP contract shows them, and the SQLSTATE -> HTTP status table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import psycopg2

RETRY_AFTER_SECONDS = 1

# Exact SQLSTATE codes checked before their class (the first two characters).
_STATUS_BY_CODE = {
    "42501": 403,  # insufficient_privilege
    "25006": 403,  # read_only_sql_transaction
    "57014": 504,  # query_canceled: statement_timeout fired
    "57P01": 503,  # admin_shutdown: the server is restarting
    "57P02": 503,  # crash_shutdown
    "57P03": 503,  # cannot_connect_now: the server is starting
    "55P03": 409,  # lock_not_available
    "53400": 413,  # configuration_limit_exceeded: temp_file_limit, the same each time
}
_STATUS_BY_CLASS = {
    "08": 503,  # connection exception
    "22": 400,  # data exception
    "23": 409,  # integrity constraint violation
    "40": 409,  # transaction rollback: serialization failure, deadlock
    "42": 400,  # syntax error or access rule violation
    "53": 503,  # insufficient resources (too many connections, disk full)
    "58": 500,  # system error
    "XX": 500,  # internal error
}
# Any other class (P0 raised by PL/pgSQL, 0A unsupported, 21 cardinality...) is the
# client's statement failing in an ordinary way.
_DEFAULT_SQL_STATUS = 400
GENERIC_MESSAGE = "internal server error"


@dataclass(eq=False)
class ApiError(Exception):
    """An error answer: status plus the fields of the JSON error body.

    Not frozen: Python sets `__traceback__` on exceptions as they propagate."""

    status: int
    message: str
    sqlstate: str | None = None
    detail: str | None = None
    hint: str | None = None
    position: int | None = None
    statement: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def at_statement(self, index: int) -> ApiError:
        return replace(self, statement=index)


def status_for_sqlstate(sqlstate: str) -> int:
    """The HTTP status for a PostgreSQL error code (see the table in the design)."""
    if sqlstate in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[sqlstate]
    return _STATUS_BY_CLASS.get(sqlstate[:2], _DEFAULT_SQL_STATUS)


def unavailable(message: str) -> ApiError:
    """A 503 telling the client when it is worth trying again."""
    return ApiError(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def from_db_error(error: psycopg2.Error) -> ApiError:
    """Translate a server error (it has a SQLSTATE) into the contract's error, keeping
    PostgreSQL's own words; app.transaction handles the driver's own failures."""
    sqlstate = error.pgcode
    status = status_for_sqlstate(sqlstate)
    if status == 500:
        return ApiError(500, GENERIC_MESSAGE, sqlstate=sqlstate)
    diag = error.diag
    position = int(diag.statement_position) if diag.statement_position else None
    message = diag.message_primary or str(error).strip()
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
    return ApiError(
        status,
        message,
        sqlstate=sqlstate,
        detail=diag.message_detail,
        hint=diag.message_hint,
        position=position,
        headers=headers,
    )
