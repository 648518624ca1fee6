"""What the routes ask of the database: a query, a transaction, a stream, a ping.

Each operation borrows one connection of the request's login (app.sessions), runs a
`Transaction` on it (app.transaction) and gives the connection back on every path: COMMIT
with the session reset on success, ROLLBACK and reset (or closing it) on any failure, a
client that vanished mid-stream included. `timeout_ms` bounds the whole of it, from the
wait for a connection to the COMMIT, whatever number of statements; a stream's batches get
timeout_ms each, within STREAM_MAX_S. Results are plain data; app.responses makes the JSON
bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg2

from app import metrics
from app.errors import GENERIC_MESSAGE, ApiError
from app.sessions import Logins, Session
from app.settings import Settings
from app.transaction import StatementResult, Transaction, translate
from app.typecast import TypeCatalog
from app.validation import Options, Statement
from app.wait import DeadlineExceeded, connecting_until

log = logging.getLogger(__name__)
T = TypeVar("T")


class Database:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.logins = Logins(settings, metrics.record_pool, metrics.record_terminated)
        self._catalog = TypeCatalog()

    def _acquire(self, role: str | None, timeout_s: float) -> Session:
        """A connection of the role's login, the request's deadline running from now."""
        deadline = time.monotonic() + timeout_s
        wait = min(self._settings.pool_timeout_ms / 1000, timeout_s)
        with connecting_until(deadline):
            connection = self.logins.acquire(role, wait)
        connection.start_deadline(deadline - time.monotonic())
        return connection

    def _in_transaction(
        self, options: Options, role: str | None, work: Callable[[Transaction], T]
    ) -> T:
        """`work` in a transaction whose connection is committed and pooled, or abandoned,
        whatever happens; anything unexpected is logged and answered 500. (Not a generator
        context manager: contextlib's machinery is dear on a path every request takes.)"""
        started = time.perf_counter()
        connection = self._acquire(role, options.timeout_ms / 1000)
        committed = False
        try:
            done = work(Transaction(connection, options, self._settings, self._catalog))
            self._commit(connection)
            committed = True
            return done
        except ApiError:
            raise
        except Exception:
            log.exception("unexpected error running a request's SQL")
            raise ApiError(500, GENERIC_MESSAGE) from None
        finally:
            if not committed:
                self.logins.abandon(connection)
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)

    def _commit(self, connection: Session) -> None:
        try:
            self.logins.commit(connection)
        except psycopg2.Error as error:
            raise translate(error, connection) from None
        except DeadlineExceeded:
            raise ApiError(
                504,
                "the request did not finish within timeout_ms; its COMMIT had been sent, so it "
                "may or may not have been committed",
                sqlstate="57014",
            ) from None

    def query(self, statement: Statement, options: Options, role: str | None) -> StatementResult:
        return self._in_transaction(options, role, lambda transaction: transaction.run(statement))

    def transaction(
        self, statements: list[Statement], options: Options, role: str | None
    ) -> list[StatementResult]:
        """All statements or none; an error names the zero-based index of the failing one."""

        def run_all(transaction: Transaction) -> list[StatementResult]:
            results = []
            for index, statement in enumerate(statements):
                try:
                    results.append(transaction.run(statement))
                except ApiError as error:
                    raise error.at_statement(index) from None
            return results

        return self._in_transaction(options, role, run_all)

    def stream(
        self, statement: Statement, options: Options, role: str | None
    ) -> Iterator[bytes | ApiError]:
        """NDJSON lines; an error after the first line is the last item (as data)."""
        started = time.perf_counter()
        ends_at = time.monotonic() + self._settings.stream_max_s
        connection = self._acquire(role, options.timeout_ms / 1000)
        try:
            transaction = Transaction(connection, options, self._settings, self._catalog)
            lines = transaction.stream(statement, ends_at)
        except BaseException:
            self.logins.abandon(connection)
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)
            raise
        return self._finish_stream(transaction, lines, started, ends_at)

    def _finish_stream(
        self, transaction: Transaction, lines: Iterator[bytes], started: float, ends_at: float
    ) -> Iterator[bytes | ApiError]:
        connection = transaction.connection
        committed = False
        try:
            yield from lines
            transaction.start_batch(ends_at)  # the COMMIT: timeout_ms, within the stream's end
            self._commit(connection)
            committed = True
        except ApiError as error:
            yield error
        except Exception:
            log.exception("unexpected error while streaming")
            yield ApiError(500, GENERIC_MESSAGE)
        finally:  # also when the client went away (the generator is closed)
            if not committed:
                self.logins.abandon(connection)
            metrics.QUERY_SECONDS.observe(time.perf_counter() - started)

    def probe(self, timeout_s: float) -> bool:
        """True when a new connection of the gateway's own login answers `SELECT 1` within
        `timeout_s`. The readiness check: it runs in gunicorn's master, which keeps no pool
        (its connections would be inherited by every worker it forks)."""
        started = time.monotonic()
        try:
            connection = self.logins.main.connect()
        except Exception:
            return False
        try:
            connection.start_deadline(timeout_s)
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            return False
        finally:
            connection.close()
        return time.monotonic() - started <= timeout_s

    def close(self) -> None:
        self.logins.close_all()
