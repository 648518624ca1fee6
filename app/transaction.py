"""One request's transaction: the client's statements one at a time, rows in bounded batches.

BEGIN and the request's limits ride with the first statement. Each statement of the
client's text, as PostgreSQL will read it (app.sqlscan, checked by app.sqlguard), is sent
in a message of its own, as the client wrote it. How its rows are read (`Plan`):
- CURSOR: a query goes behind a server-side cursor and is fetched in batches sized by rows
  and by bytes, so a result over max_rows or MAX_RESULT_BYTES is refused as soon as it
  crosses the limit, with the worker holding little more than the limit;
- DIRECT: everything else (RETURNING, EXECUTE, FETCH, SHOW, EXPLAIN, CALL...) is sent as it
  is; libpq reads such a result whole, and what bounds it is the read limit (app.wait),
  which gives up on the connection once libpq holds more than READ_LIMIT_FACTOR times what
  is left of the budget.
A query before the last has its rows discarded by the server. Every statement runs under
the request's one deadline (set by app.db; a stream's batches each get timeout_ms within
STREAM_MAX_S). Errors become the contract's ApiError here, with positions in the client's
own text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import psycopg2
import psycopg2.extensions as ext

from app import metrics, randomness
from app.encode import DuplicateColumnError, check_unique_columns, encode_lines, encode_rows
from app.errors import ApiError, from_db_error, unavailable
from app.sessions import Session
from app.settings import Settings
from app.sqlguard import check, scanner, statements
from app.sqlscan import Piece
from app.typecast import TYPE_QUERY, Convert, TypeCatalog
from app.validation import Options, Statement
from app.wait import DeadlineExceeded, ResultTooLarge

log = logging.getLogger(__name__)

# The first batch is small: nothing is known yet about how wide the rows are, and a first
# FETCH of two still answers one-row results (the commonest) in the first round trip.
FIRST_BATCH_ROWS = 2
# Also a cap on rows per batch: the worker's RSS keeps the high-water mark of a batch's
# Python objects (streaming 10^6 narrow rows: +44 MiB at 10,000 rows a batch, +6 MiB at 2,000).
MAX_BATCH_ROWS = 2_000
# A later batch aims at 1/BATCH_SHARE of the byte budget left (streaming: at
# STREAM_BATCH_BYTES), at twice the widest row width seen so far.
BATCH_SHARE = 4
STREAM_BATCH_BYTES = 1024 * 1024
DIRECT_BATCH_ROWS = 1000
# libpq may hold this many times the byte budget left, plus the slack, for one result: its
# input buffer grows to twice a message's length, and a bytea value is half again as long
# on the wire as in JSON, so no result that fits the budget is refused by this limit.
READ_LIMIT_FACTOR = 4
READ_LIMIT_SLACK = 1024 * 1024
_DATA_MODIFYING = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
_QUERIES = frozenset({"SELECT", "VALUES", "TABLE", ""})
_TYPE_NAMES = "SELECT oid::int, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY(%s)"
_PARAMETER_ERRORS = (TypeError, IndexError, KeyError, ValueError)
OK = b'"OK"'


class Plan(Enum):
    CURSOR = "cursor"
    DIRECT = "direct"


def plan(piece: Piece) -> Plan:
    """How a statement's rows are read (see the module doc): a query that a cursor may hold
    (no data-modifying WITH, no SELECT ... INTO) goes behind one."""
    first = piece.words[0] if piece.words else ""
    top = piece.top_keywords
    modifying = (piece.paren_keywords | top) & _DATA_MODIFYING  # in a WITH, or its main part
    if first in _QUERIES or (first == "WITH" and not modifying):
        return Plan.DIRECT if "INTO" in top else Plan.CURSOR
    return Plan.DIRECT


@dataclass(frozen=True)
class StatementResult:
    """One statement's answer; `payload` is the JSON of the `result` member."""

    payload: bytes
    columns: list[dict[str, str]] | None
    rowcount: int
    command: str
    duration_ms: float


@dataclass(frozen=True)
class _Sent:
    """Where the client's statement sits in the message that carried it."""

    piece: Piece
    prefix: str
    after: str


class Transaction:
    """The statements of one request, on one connection, in one transaction."""

    def __init__(
        self, connection: Session, options: Options, settings: Settings, catalog: TypeCatalog
    ) -> None:
        self.connection = connection
        self.options = options
        self.budget_left = settings.max_result_bytes  # for all statements of the request
        self._catalog = catalog
        self._cursor = connection.cursor()
        # Names of the gateway's cursors and tables: a client's own held cursor or temporary
        # table of the same session cannot be mistaken for one.
        self._name_prefix = f"pgw_{randomness.token_hex(4)}_"
        self._names = 0
        self._begin = _begin_sql(options)
        self._max_result_bytes = settings.max_result_bytes
        self.streaming = False

    # -- statements -----------------------------------------------------------------------

    def run(self, statement: Statement) -> StatementResult:
        """Every statement of the text, in order; the answer is the last one's."""
        started = time.perf_counter()
        result = StatementResult(OK, None, 0, "", 0.0)
        for text, piece, last in self._pieces(statement):
            if last:
                result = self._open(text, piece).result()
            else:
                self._discard(text, piece)
        duration_ms = (time.perf_counter() - started) * 1000  # not dataclasses.replace: dear
        return StatementResult(
            result.payload, result.columns, result.rowcount, result.command, duration_ms
        )

    def stream(self, statement: Statement, ends_at: float) -> Iterator[bytes]:
        """NDJSON lines of the last statement's rows. Everything up to its first batch runs
        before this returns, so a failure there gets its status rather than a cut stream;
        after that each batch gets timeout_ms, none past `ends_at` (STREAM_MAX_S)."""
        self.streaming = True
        reader: _Rows | None = None
        for text, piece, last in self._pieces(statement):
            if last:
                reader = self._open(text, piece)
            else:
                self._discard(text, piece)
        return reader.lines(ends_at) if reader is not None else iter(())

    def _pieces(self, statement: Statement) -> Iterator[tuple[str, Piece, bool]]:
        """(text, statement, is it the last) for each statement of the client's text, read
        with the standard_conforming_strings the server has at that point: all are checked
        before the first is sent, the rest again when a statement changed the setting."""
        text = self._text(statement)
        standard = self._standard_strings()
        pending = list(check(text, standard))
        while pending:
            piece = pending.pop(0)
            yield text, piece, not pending
            if pending and (now := self._standard_strings()) != standard:
                standard = now
                pending = statements(scanner(text), piece.end + 1, standard)

    def _text(self, statement: Statement) -> str:
        """The SQL as PostgreSQL receives it: psycopg2 binds parameters by quoting them into
        the text, so the scanner sees exactly what the server will."""
        if statement.params is None:
            return statement.query
        try:
            sent = self._cursor.mogrify(statement.query, statement.params)
        except _PARAMETER_ERRORS as error:
            raise ApiError(
                400, f"the parameters do not match the placeholders of the query: {error!r}"
            ) from None
        return sent.decode(ext.encodings[self.connection.encoding])

    def _standard_strings(self) -> bool:
        return self.connection.get_parameter_status("standard_conforming_strings") != "off"

    def _discard(self, text: str, piece: Piece) -> None:
        """A statement before the last: run it, a query's rows dropped by the server."""
        body = text[piece.start : piece.end]
        if plan(piece) is Plan.CURSOR:
            name = self._name()
            before = f"DECLARE {name} NO SCROLL CURSOR FOR "
            self._send(piece, before, body, f"\n; MOVE ALL IN {name}; CLOSE {name}")
        else:
            self._send(piece, "", body, "")

    def _open(self, text: str, piece: Piece) -> _Rows:
        """Send the last statement (a query asks for its first batch); its rows to read."""
        body = text[piece.start : piece.end]
        if plan(piece) is Plan.DIRECT:
            self._send(piece, "", body, "")
            return _Rows(self, None, FIRST_BATCH_ROWS)
        name = self._name()
        first = FIRST_BATCH_ROWS
        if not self.streaming:
            first = min(first, self.options.max_rows + 1)
        self._send(
            piece, f"DECLARE {name} NO SCROLL CURSOR FOR ", body, f"\n; FETCH {first} FROM {name}"
        )
        return _Rows(self, name, first)

    def _name(self) -> str:
        self._names += 1
        return f"{self._name_prefix}{self._names}"

    def _send(self, piece: Piece, before: str, body: str, after: str) -> None:
        """One message holding one statement of the client's (the first also opens the
        transaction)."""
        prefix, self._begin = self._begin + before, ""
        self.execute(prefix + body + after, sent=_Sent(piece, prefix, after))

    def execute(self, sql: str, params: Any = None, sent: _Sent | None = None) -> None:
        """Execute on the request's cursor, libpq holding at most the read limit of its
        result; a failure becomes the contract's error."""
        self.connection.read_limit = self._read_limit()
        try:
            self._cursor.execute(sql, params)
        except psycopg2.Error as error:
            api_error = translate(error, self.connection)
            raise (_in_client_terms(api_error, sent) if sent else api_error) from None
        except DeadlineExceeded:
            log.warning("the server did not stop a statement when cancelled: connection closed")
            raise _past_deadline() from None
        except ResultTooLarge:
            raise _too_large(self.streaming) from None

    def _read_limit(self) -> int:
        """A stream has no total, but any one result is bounded as a whole answer is."""
        left = self._max_result_bytes if self.streaming else max(self.budget_left, 0)
        return READ_LIMIT_FACTOR * left + READ_LIMIT_SLACK

    # -- reading rows ---------------------------------------------------------------------

    def fetch(self, name: str, rows: int) -> list[Any]:
        self.execute(f"FETCH {rows} FROM {name}")
        return self._cursor.fetchall()

    def start_batch(self, ends_at: float) -> None:
        """A stream's next batch gets timeout_ms, and none may start past its end."""
        left = ends_at - time.monotonic()
        if left <= 0:
            raise ApiError(
                504,
                "the stream ran longer than the server's STREAM_MAX_S and was ended; "
                "nothing of it was committed",
            )
        self.connection.start_deadline(min(self.options.timeout_ms / 1000, left))

    def converters(self, oids: list[int]) -> dict[int, Convert]:
        """Converters for columns of types no caster knows (their values arrive as text):
        the catalog is asked once per process and type."""
        missing = self._catalog.missing(oids)
        if missing:
            self.execute(TYPE_QUERY, (missing,))
            self._catalog.learn(missing, self._cursor.fetchall())
        return self._catalog.converters(oids)

    def type_names(self, oids: list[int]) -> dict[int, str]:
        """PostgreSQL's current names of the result's types (a rename shows at once)."""
        self.execute(_TYPE_NAMES, (sorted(set(oids)),))
        return dict(self._cursor.fetchall())

    @property
    def cursor(self) -> ext.cursor:
        return self._cursor


def _begin_sql(options: Options) -> str:
    sql = "BEGIN READ ONLY" if options.read_only else "BEGIN"
    sql += f"; SET LOCAL statement_timeout = {int(options.timeout_ms)}"
    if options.read_only:
        sql += "; SELECT 1"  # a snapshot taken: SQL can no longer switch to READ WRITE
    return sql + ";\n"


def translate(error: psycopg2.Error, connection: Session) -> ApiError:
    """A driver error as the contract's error (app.errors has the SQLSTATE table)."""
    if connection.cancelled and error.pgcode in (None, "57014"):
        return _past_deadline()
    if connection.closed:
        log.warning("database connection lost: %s", str(error).strip())
        return unavailable(
            "the connection to the database was lost; the statement may or may not have run"
        )
    if error.pgcode is None:
        return _driver_error(error)
    api_error = from_db_error(error)
    metrics.SQL_ERRORS.labels(api_error.sqlstate[:2]).inc()
    if api_error.status == 500:
        log.error("unexpected database error %s: %s", error.pgcode, str(error).strip())
    return api_error


def _past_deadline() -> ApiError:
    return ApiError(
        504, "the statement did not finish within timeout_ms and was cancelled", sqlstate="57014"
    )


def _too_large(streaming: bool) -> ApiError:
    if streaming:
        return ApiError(
            413, "a row of the stream is larger than the server's MAX_RESULT_BYTES allows"
        )
    return ApiError(
        413,
        "the result is larger than the server's MAX_RESULT_BYTES; narrow the query or stream "
        "it with Accept: application/x-ndjson",
    )


def _driver_error(error: psycopg2.Error) -> ApiError:
    """A failure the driver raised itself, with no SQLSTATE, the connection still up."""
    message = str(error).strip()
    if "COPY" in message:
        return ApiError(
            400,
            "COPY ... FROM STDIN and TO STDOUT need the COPY protocol, which a request over "
            "HTTP does not carry: use INSERT ... VALUES, or SELECT for the rows",
        )
    log.error("driver error without SQLSTATE: %s", message)
    return ApiError(500, "internal server error")


def _in_client_terms(error: ApiError, sent: _Sent) -> ApiError:
    """Positions in the client's text; none of the gateway's own SQL in the words."""
    position = None
    if error.position is not None:
        offset = error.position - len(sent.prefix)
        if 1 <= offset <= sent.piece.end - sent.piece.start + 1:
            position = sent.piece.start + offset
    fields = {}
    for name in ("message", "detail", "hint"):
        text = getattr(error, name)
        if text and sent.after and sent.after in text:
            text = text.replace(sent.after, "")
        if text and "pgw_" in text:
            text = "the statement could not be run as written" if name == "message" else None
        fields[name] = text
    return replace(error, position=position, **fields)


class _Rows:
    """The rows of one statement, batch by batch, within the request's limits."""

    def __init__(self, transaction: Transaction, cursor_name: str | None, first_batch: int) -> None:
        self._transaction = transaction
        self._cursor_name = cursor_name  # None: read from the driver's buffer (DIRECT)
        self._streaming = transaction.streaming
        self._ends_at: float | None = None  # a stream's end (STREAM_MAX_S)
        cursor = transaction.cursor
        self._command = cursor.statusmessage or ""
        self._rowcount = max(cursor.rowcount, 0)
        self._description = cursor.description
        self._widest = 1
        self._fetched = 0
        if self._description is None:
            return
        self._names = [column.name for column in self._description]
        try:
            check_unique_columns(self._names)
        except DuplicateColumnError as error:
            raise ApiError(400, str(error)) from None
        self._oids = [column.type_code for column in self._description]
        self._requested = first_batch
        # A batch already sits in the driver: take it before any other query on the cursor.
        self._pending: list[Any] | None = self._read(self._requested)
        self._converters = transaction.converters(self._oids)

    def result(self) -> StatementResult:
        if self._description is None:
            return StatementResult(OK, None, self._rowcount, self._command, 0.0)
        transaction = self._transaction
        chunks, total = [], 0
        for batch in self._batches():
            total += len(batch)
            if total > transaction.options.max_rows:
                raise ApiError(
                    413,
                    f"the result has more than {transaction.options.max_rows} rows; narrow "
                    "the query, raise max_rows up to the server's MAX_ROWS, or stream it "
                    "with Accept: application/x-ndjson",
                )
            chunk = encode_rows(self._names, batch)[1:-1]
            transaction.budget_left -= len(chunk) + 1
            if transaction.budget_left < 0:
                raise _too_large(streaming=False)
            self._widest = max(self._widest, len(chunk) // len(batch))
            chunks.append(chunk)
        columns = self._columns() if transaction.options.meta else None
        payload = b"[" + b",".join(chunks) + b"]"
        return StatementResult(payload, columns, total, self._command_tag(total), 0.0)

    def lines(self, ends_at: float) -> Iterator[bytes]:
        if self._description is None:
            return
        self._ends_at = ends_at
        for batch in self._batches():
            lines = encode_lines(self._names, batch)
            self._widest = max(self._widest, len(lines) // len(batch))
            yield lines

    def _batches(self) -> Iterator[list[Any]]:
        """The rows, converted where no caster could, batch by batch."""
        rows, self._pending = self._pending or [], None
        while True:
            if self._converters:
                rows = [self._convert(row) for row in rows]
            if rows:
                yield rows
            if len(rows) < self._requested:
                return
            self._requested = self._next_batch()
            rows = self._read(self._requested)

    def _read(self, count: int) -> list[Any]:
        """The next rows: a FETCH from the cursor, or the driver's buffer (DIRECT)."""
        if self._cursor_name is None:
            rows = self._transaction.cursor.fetchmany(count)
        elif self._fetched == 0:
            rows = self._transaction.cursor.fetchall()  # the FETCH sent with the statement
        elif self._ends_at is not None:  # a stream's batch: timeout_ms, within STREAM_MAX_S
            self._transaction.start_batch(self._ends_at)
            rows = self._transaction.fetch(self._cursor_name, count)
        else:
            rows = self._transaction.fetch(self._cursor_name, count)
        self._fetched += len(rows)
        return rows

    def _convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for index, convert in self._converters.items():
            if values[index] is not None:
                values[index] = convert(values[index])
        return tuple(values)

    def _next_batch(self) -> int:
        """As many rows as fit the target size at twice the widest row seen, within the
        row cap (streams have none)."""
        if self._cursor_name is None:
            return DIRECT_BATCH_ROWS
        if self._streaming:
            return max(1, min(MAX_BATCH_ROWS, STREAM_BATCH_BYTES // (2 * self._widest)))
        target = max(self._transaction.budget_left // BATCH_SHARE, 1)
        cap = self._transaction.options.max_rows + 1 - self._fetched
        return max(1, min(cap, MAX_BATCH_ROWS, target // (2 * self._widest)))

    def _columns(self) -> list[dict[str, str]]:
        names = self._transaction.type_names(self._oids)
        return [
            {"name": name, "type": names.get(oid, "unknown")}
            for name, oid in zip(self._names, self._oids, strict=True)
        ]

    def _command_tag(self, rows: int) -> str:
        """A query read through a cursor: the tag it would have had on its own."""
        return self._command if self._cursor_name is None else f"SELECT {rows}"
