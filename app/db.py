"""Running requests against PostgreSQL: transactions, limits, retries, results.

Each request is one transaction opened by the gateway itself: connections are in
autocommit mode, and BEGIN, the `SET LOCAL` limits and the role travel in the same round
trip as the client's first statement; COMMIT (with the session reset) is the second.
Before anything is sent, a pooled connection is checked for a pending close (PostgreSQL
restarted): such a connection is replaced and the request goes to a fresh one. Once the
SQL has been sent, a failure is reported and never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2
import psycopg2.extensions as ext
from gevent.monkey import get_original

from app import metrics
from app.encode import (
    SESSION_OPTIONS,
    DuplicateColumnError,
    check_unique_columns,
    encode_lines,
    encode_rows,
    register_typecasters,
)
from app.errors import ApiError, from_db_error, unavailable
from app.pool import ConnectFailed, ConnectionPool, PoolTimeout
from app.settings import Settings
from app.sqlguard import check_statement, statement_words_cached
from app.validation import Options, Statement

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3
STREAM_BATCH_ROWS = 2000
# A session-level SET inside a committed transaction would outlive the request.
_FINISH = "COMMIT; RESET ALL; RESET ROLE"
_CURSOR_FIRST_WORDS = {"SELECT", "VALUES", "TABLE"}
_PARAMETER_ERRORS = (TypeError, IndexError, KeyError, ValueError)
# The OS's select even in a gevent worker: a zero timeout never blocks, and the cooperative
# version cost about 4 % of a request's CPU.
_select = get_original("select", "select")


@dataclass(frozen=True)
class StatementResult:
    """One statement's answer; `payload` is the JSON of the `result` member."""

    payload: bytes
    columns: list[dict[str, str]] | None
    rowcount: int
    command: str
    duration_ms: float

    def body(self, meta: bool) -> bytes:
        if not meta:
            return b'{"result":' + self.payload + b"}"
        return orjson.dumps(
            {
                "result": orjson.Fragment(self.payload),
                "columns": self.columns,
                "rowcount": self.rowcount,
                "command": self.command,
                "truncated": False,  # results are never cut short: over a limit is a 413
                "duration_ms": round(self.duration_ms, 3),
            }
        )


class _Transaction:
    """A cursor plus the BEGIN text that rides along with the first statement sent."""

    __slots__ = ("_begin", "cursor")

    def __init__(self, cursor: ext.cursor, begin: str) -> None:
        self.cursor = cursor
        self._begin = begin

    def take_begin(self, has_params: bool) -> str:
        begin, self._begin = self._begin, ""
        # With parameters psycopg2 interpolates the whole text: a `%` in a role name must
        # not read as a placeholder.
        return begin.replace("%", "%%") if has_params else begin


def _has_pending_input(connection: ext.connection) -> bool:
    """An idle connection has nothing to read; data or EOF means the server hung up."""
    try:
        readable, _, _ = _select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)


def _cursor_prefix(name: str) -> str:
    return f"DECLARE {name} NO SCROLL CURSOR FOR "


class Database:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool = ConnectionPool(self._connect, settings.pool_max, metrics.record_pool)
        self._type_names: dict[int, str] = {}

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    def _connect(self) -> ext.connection:
        dsn = dict(self._settings.dsn)
        dsn["options"] = f"{dsn.get('options', '')} {SESSION_OPTIONS}".strip()
        dsn.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        dsn.setdefault("application_name", "pg-gateway")
        connection = psycopg2.connect(**dsn)
        connection.autocommit = True
        register_typecasters(connection)
        return connection

    # -- connections and transactions -------------------------------------------------

    def _acquire(self, timeout_s: float | None = None) -> ext.connection:
        wait = self._settings.pool_timeout_ms / 1000 if timeout_s is None else timeout_s
        try:
            return self._pool.acquire(wait)
        except PoolTimeout:
            raise unavailable("all database connections are busy; try again shortly") from None
        except ConnectFailed as error:
            log.warning("cannot connect to PostgreSQL: %s", str(error).strip())
            raise unavailable("database unavailable") from None

    def _release(self, connection: ext.connection) -> None:
        """Return a connection, rolling back whatever the request left open."""
        broken = bool(connection.closed)
        if not broken and connection.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("ROLLBACK")
            except psycopg2.Error:
                broken = True
        self._pool.release(connection, broken=broken)

    def _begin_sql(self, connection: ext.connection, options: Options, role: str | None) -> str:
        sql = "BEGIN READ ONLY" if options.read_only else "BEGIN"
        sql += f"; SET LOCAL statement_timeout = {int(options.timeout_ms)}"
        if role:
            sql += f"; SET LOCAL ROLE {ext.quote_ident(role, connection)}"
        return sql + ";\n"

    def _acquire_live(self) -> ext.connection:
        """A pooled connection that has not been closed by the server, tried twice."""
        for _attempt in range(2):
            connection = self._acquire()
            if not connection.closed and not _has_pending_input(connection):
                return connection
            log.info("replacing a database connection the server closed")
            self._pool.release(connection, broken=True)
            self._pool.discard_idle()
        raise unavailable("database unavailable")

    @contextmanager
    def _transaction(self, options: Options, role: str | None) -> Iterator[_Transaction]:
        connection = self._acquire_live()
        try:
            with connection.cursor() as cursor:
                transaction = _Transaction(cursor, self._begin_sql(connection, options, role))
                yield transaction
                cursor.execute(_FINISH)
        except psycopg2.Error as error:
            raise self._translate(error, connection) from None
        finally:
            self._release(connection)

    def _translate(self, error: psycopg2.Error, connection: ext.connection) -> ApiError:
        if connection.closed:
            log.warning("database connection lost: %s", str(error).strip())
            return unavailable(
                "the connection to the database was lost; the statement may or may not have run"
            )
        api_error = from_db_error(error)
        if api_error.sqlstate:
            metrics.SQL_ERRORS.labels(api_error.sqlstate[:2]).inc()
        if api_error.status == 500:
            log.error("unexpected database error %s: %s", error.pgcode, str(error).strip())
        return api_error

    # -- statements -------------------------------------------------------------------

    def _execute(
        self, transaction: _Transaction, statement: Statement, prefix: str, suffix: str
    ) -> None:
        """Execute with the client's parameters; positions in errors refer to the client's SQL."""
        cursor = transaction.cursor
        prefix = transaction.take_begin(statement.params is not None) + prefix
        try:
            cursor.execute(prefix + statement.query + suffix, statement.params)
        except psycopg2.Error as error:
            if error.pgcode is None and not cursor.connection.closed:
                raise ApiError(400, f"cannot use the parameters: {error}") from None
            raise self._translate(error, cursor.connection).shift_position(-len(prefix)) from None
        except _PARAMETER_ERRORS as error:
            raise ApiError(
                400, f"the parameters do not match the placeholders of the query: {error!r}"
            ) from None

    def _run(
        self,
        transaction: _Transaction,
        statement: Statement,
        options: Options,
        index: int,
        budget: int,
    ) -> StatementResult:
        """Run one statement; a lone query goes through a cursor so only max_rows+1 rows load."""
        started = time.perf_counter()
        words = statement_words_cached(statement.query)
        through_cursor = len(words) == 1 and words[0][0] in _CURSOR_FIRST_WORDS
        if through_cursor:
            name = f"pgw_{index}"
            self._execute(
                transaction,
                statement,
                _cursor_prefix(name),
                f"\n;FETCH {options.max_rows + 1} FROM {name}",
            )
        else:
            self._execute(transaction, statement, "", "")
        cursor = transaction.cursor
        command = cursor.statusmessage or ""
        if through_cursor:
            command = command.replace("FETCH", "SELECT", 1)
        description, rowcount = cursor.description, max(cursor.rowcount, 0)
        if description is None:
            payload, columns = b'"OK"', None
        else:
            payload = self._collect_rows(cursor, options.max_rows, budget)
            columns = self._columns(cursor, description) if options.meta else None
        duration_ms = (time.perf_counter() - started) * 1000
        return StatementResult(payload, columns, rowcount, command, duration_ms)

    @staticmethod
    def _collect_rows(cursor: ext.cursor, max_rows: int, budget: int) -> bytes:
        names = [column.name for column in cursor.description]
        try:
            check_unique_columns(names)
        except DuplicateColumnError as error:
            raise ApiError(400, str(error)) from None
        rows = cursor.fetchmany(max_rows + 1)
        if len(rows) > max_rows:
            raise ApiError(
                413,
                f"the result has more than {max_rows} rows; narrow the query, raise max_rows "
                "up to the server's MAX_ROWS, or stream it with Accept: application/x-ndjson",
            )
        # One encoder call for the whole result: rows are already capped by max_rows.
        payload = encode_rows(names, rows)
        if rows and len(payload) + 1 > budget:
            raise ApiError(
                413,
                "the result is larger than the server's MAX_RESULT_BYTES; narrow the query "
                "or stream it with Accept: application/x-ndjson",
            )
        return payload

    def _columns(self, cursor: ext.cursor, description: Any) -> list[dict[str, str]]:
        """Column names with PostgreSQL type names, looked up once per type and process."""
        missing = sorted({c.type_code for c in description if c.type_code not in self._type_names})
        if missing:
            cursor.execute(
                "SELECT oid::int, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)",
                (missing,),
            )
            self._type_names.update(cursor.fetchall())
        return [
            {"name": column.name, "type": self._type_names.get(column.type_code, "unknown")}
            for column in description
        ]

    # -- public operations -------------------------------------------------------------

    @staticmethod
    def _check(
        statements: list[Statement], options: Options, role: str | None, indexed: bool
    ) -> None:
        """Refuse guarded statements before anything reaches PostgreSQL."""
        restricted = bool(role) or options.read_only
        for index, statement in enumerate(statements):
            try:
                check_statement(statement.query, restricted)
            except ApiError as error:
                raise error.at_statement(index) if indexed else error from None

    def query(self, statement: Statement, options: Options, role: str | None) -> StatementResult:
        self._check([statement], options, role, indexed=False)
        started = time.perf_counter()
        try:
            with self._transaction(options, role) as transaction:
                return self._run(
                    transaction, statement, options, 0, self._settings.max_result_bytes
                )
        finally:
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)

    def transaction(
        self, statements: list[Statement], options: Options, role: str | None
    ) -> list[StatementResult]:
        """All statements or none; an error names the zero-based index of the failing one."""
        self._check(statements, options, role, indexed=True)
        started = time.perf_counter()
        results: list[StatementResult] = []
        budget = self._settings.max_result_bytes
        try:
            with self._transaction(options, role) as transaction:
                for index, statement in enumerate(statements):
                    try:
                        result = self._run(transaction, statement, options, index, budget)
                    except ApiError as error:
                        raise error.at_statement(index) from None
                    budget -= len(result.payload)
                    results.append(result)
            return results
        finally:
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)

    def stream(self, statement: Statement, options: Options, role: str | None) -> Iterator[bytes]:
        """NDJSON lines from a server-side cursor; the first batch is read before returning,
        so a failing query is answered with a proper status instead of a broken stream."""
        self._check([statement], options, role, indexed=False)
        connection = self._acquire_live()
        cursor = connection.cursor()
        transaction = _Transaction(cursor, self._begin_sql(connection, options, role))
        try:
            self._execute(
                transaction,
                statement,
                _cursor_prefix("pgw_stream"),
                f"\n;FETCH {STREAM_BATCH_ROWS} FROM pgw_stream",
            )
            names = [column.name for column in cursor.description]
            check_unique_columns(names)
            first_batch = cursor.fetchall()
        except psycopg2.Error as error:
            self._release(connection)
            raise self._translate(error, connection) from None
        except DuplicateColumnError as error:
            self._release(connection)
            raise ApiError(400, str(error)) from None
        except ApiError:
            self._release(connection)
            raise
        return self._stream_rows(connection, cursor, names, first_batch)

    def _stream_rows(
        self, connection: ext.connection, cursor: ext.cursor, names: list[str], batch: list[Any]
    ) -> Iterator[bytes]:
        try:
            while batch:
                yield encode_lines(names, batch)
                if len(batch) < STREAM_BATCH_ROWS:
                    break
                cursor.execute(f"FETCH {STREAM_BATCH_ROWS} FROM pgw_stream")
                batch = cursor.fetchall()
            cursor.execute(_FINISH)
        except psycopg2.Error as error:
            # The status line is long gone: report the failure as the last line.
            yield orjson.dumps(self._translate(error, connection).body()) + b"\n"
        finally:
            cursor.close()
            self._release(connection)

    def ping(self, timeout_s: float) -> bool:
        """True when `SELECT 1` through the pool answers within `timeout_s`."""
        started = time.monotonic()
        try:
            connection = self._acquire(timeout_s)
        except ApiError:
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except psycopg2.Error:
            self._pool.release(connection, broken=True)
            self._pool.discard_idle()
            return False
        self._release(connection)
        return time.monotonic() - started <= timeout_s

    def close(self) -> None:
        self._pool.close()
