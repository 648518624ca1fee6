"""Database sessions: a pool per login, each connection handed out in a pristine state.

Every role a token maps to logs in as itself, with its own password and its own pool, so
its privileges are PostgreSQL's to enforce; nothing runs `SET ROLE` from a more privileged
login. What safety and durability rest on is pinned in each connection's startup options
(`pinned_settings`): they outrank the role's and the database's defaults, which SQL of the
same login may change, and they are what `RESET ALL` returns to. A connection goes back to
its pool only after RESET has run in the same round trip as the request's COMMIT (or after
its ROLLBACK): the parts of pgbouncer's `DISCARD ALL` (which itself may not share a message
with other statements) that undo session state, and a fresh random seed. A connection
older than POOL_MAX_AGE_S is closed instead, so a default a superuser has since changed
reaches every connection within that time. A connection whose reset fails, whose
statement was cancelled, or that broke is closed, and its backend ended (app.backends).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import psycopg2
import psycopg2.extensions as ext
from gevent.monkey import get_original

from app import backends, libpq, randomness
from app.errors import unavailable
from app.pool import ConnectFailed, ConnectionPool, PoolTimeout
from app.settings import Settings
from app.typecast import SESSION_OPTIONS, register_typecasters
from app.wait import DeadlineExceeded, GatewayConnection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3
# Client-side TCP: a server that vanished (a lost node, a partition) is noticed in about
# ten seconds, also while a request waits for its answer.
TCP_PARAMETERS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
# A backend notices a client that went away while its statement runs, within this.
CLIENT_CHECK_MS = 1000
# What DISCARD ALL undoes, less DISCARD PLANS (cached plans are nobody's state) and
# RESET ROLE (SET SESSION AUTHORIZATION DEFAULT resets the role too): each statement more
# is a result more to parse on both sides of every request. setseed() is no setting:
# without a seed of its own, the next request's random() would follow the last one's.
# The seed goes between the two halves.
RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; "
    "SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed(",
    "); DISCARD TEMP; DISCARD SEQUENCES",
)
# The backend by pid and start time (as text, which compares exactly once cast back).
_BACKEND = (
    "SELECT pid, backend_start::text FROM pg_catalog.pg_stat_activity "
    "WHERE pid = pg_catalog.pg_backend_pid()"
)
# The OS's select even in a gevent worker: a zero timeout never blocks, and the cooperative
# version cost about 4 % of a request's CPU.
_select = get_original("select", "select")


def pinned_settings(settings: Settings, read_only: bool) -> dict[str, str]:
    """The session settings a connection starts with, beyond the value formats (typecast).

    Each is one any login may set (the superuser-only `temp_file_limit` is the
    provisioning's, per login), and each is one a role or database default must not move:
    durability, read-only, where names resolve, the timeouts that end sessions, and the
    server's own view of a dead client."""
    return {
        "synchronous_commit": "on",
        "default_transaction_read_only": "on" if read_only else "off",
        "default_transaction_isolation": "read committed",
        "default_transaction_deferrable": "off",
        # The app's schema, then `public`: where a database provisioned before the schema
        # existed keeps its objects (roles.sql lets nobody but the superuser create there).
        "search_path": f"{settings.schema}, public",
        "statement_timeout": str(settings.max_statement_timeout_ms),
        "lock_timeout": "0",
        # A backstop should the gateway vanish mid-transaction (its own limits come first).
        "idle_in_transaction_session_timeout": str((settings.stream_stall_s + 10) * 1000),
        "idle_session_timeout": "0",
        "client_connection_check_interval": str(CLIENT_CHECK_MS),
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "10000",
        "row_security": "on",
    }


def startup_options(settings: Settings, read_only: bool) -> str:
    """libpq's `options`: `-c name=value`, with spaces in values escaped as libpq wants."""
    pinned = " ".join(
        f"-c {name}={value.replace(' ', chr(92) + ' ')}"
        for name, value in pinned_settings(settings, read_only).items()
    )
    return f"{SESSION_OPTIONS} {pinned}"


class Session(GatewayConnection):
    """A pooled connection and what the gateway knows about it."""

    pool: ConnectionPool | None = None
    backend: backends.Backend | None = None
    opened_at = 0.0


def _has_pending_input(connection: ext.connection) -> bool:
    """An idle connection has nothing to read; data or EOF means the server hung up."""
    try:
        readable, _, _ = _select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)


class Logins:
    """One bounded pool per login: the gateway's own, and one per role a token maps to."""

    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[ConnectionPool], None],
        on_terminated: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._on_terminated = on_terminated
        dsns: dict[str | None, dict[str, str]] = {None: settings.dsn, **settings.role_dsns}
        self._pools = {
            role: ConnectionPool(self._connector(role, dsn), settings.pool_max, on_change, login)
            for role, dsn in dsns.items()
            for login in [dsn.get("user", "")]
        }

    @property
    def main(self) -> ConnectionPool:
        return self._pools[None]

    def pools(self) -> list[ConnectionPool]:
        return list(self._pools.values())

    def _connector(self, role: str | None, dsn: dict[str, str]) -> Callable[[], Session]:
        options = startup_options(self._settings, self._settings.role_is_read_only(role))

        def connect() -> Session:
            parameters = {**TCP_PARAMETERS, **dsn}
            parameters["options"] = f"{parameters.get('options', '')} {options}".strip()
            parameters.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
            parameters.setdefault("application_name", "pg-gateway")
            parameters["client_encoding"] = "UTF8"
            connection = psycopg2.connect(**parameters, connection_factory=Session)
            libpq.learn_layout(connection)  # on a connection that has read nothing yet
            # Nobody reads NOTICEs or NOTIFYs, and psycopg2 would keep 50 of any size: a
            # PL/pgSQL loop of 8 MB notices took a worker to 460 MB.
            connection.notices = deque(maxlen=0)
            connection.notifies = deque(maxlen=0)
            connection.autocommit = True
            register_typecasters(connection)
            with connection.cursor() as cursor:
                cursor.execute(_BACKEND)
                connection.backend = cursor.fetchone()
            connection.opened_at = time.monotonic()
            return connection

        return connect

    def acquire(self, role: str | None, timeout_s: float | None = None) -> Session:
        """A live connection of that role's login; a 503 when none comes in time.

        Before anything is sent, a connection the server has closed (PostgreSQL restarted)
        is replaced together with its idle siblings: such a request is retried once. A
        connection past POOL_MAX_AGE_S is replaced by a new one. A login that may write gets
        no connection to a hot standby (PostgreSQL's `in_hot_standby`): a 503, its idle
        siblings closed, so the next request connects afresh, to the primary once there is
        one. A read-only login may read from a standby."""
        pool = self._pools[role if role in self._pools else None]
        writes = not self._settings.role_is_read_only(role)
        wait = self._settings.pool_timeout_ms / 1000 if timeout_s is None else timeout_s
        server_gone = False
        while True:
            try:
                connection = pool.acquire(wait)
            except PoolTimeout:
                raise unavailable("all database connections are busy; try again shortly") from None
            except ConnectFailed as error:
                log.warning("cannot connect to PostgreSQL: %s", str(error).strip())
                raise unavailable("database unavailable") from None
            if connection.closed or _has_pending_input(connection):
                pool.release(connection, broken=True)
                if server_gone:
                    raise unavailable("database unavailable")
                log.info("replacing a database connection the server closed")
                pool.discard_idle()
                server_gone = True
            elif self._too_old(connection):
                pool.release(connection, broken=True)
            elif writes and connection.get_parameter_status("in_hot_standby") == "on":
                # A standby (a demoted primary, or a Service not yet moved to the new one)
                # would refuse every write as read-only: a 403 the client would believe.
                pool.release(connection, broken=True)
                pool.discard_idle()
                raise unavailable("the database server is a standby: no primary to write to now")
            else:
                connection.pool = pool
                return connection

    def commit(self, connection: Session) -> None:
        """Reset the session and COMMIT in one round trip, then pool the connection.

        The reset runs inside the transaction, before COMMIT: if anything fails, nothing is
        committed and the error is raised; the caller then abandons the connection. The
        request's deadline still runs."""
        connection.read_limit = None
        with connection.cursor() as cursor:
            cursor.execute(_reset() + "; COMMIT")
        if connection.cancelled:
            # The deadline's cancel reached the COMMIT. One waiting for a synchronous standby
            # then completes with only a WARNING: committed on this server, perhaps on no
            # other, so it is no acknowledgement (the caller answers 504, "may or may not").
            raise DeadlineExceeded
        connection.stop_deadline()
        self._give_back(connection)

    def abandon(self, connection: Session) -> None:
        """Roll back and reset, or close when the connection cannot be trusted again."""
        connection.stop_deadline()
        if connection.closed or connection.cancelled:
            self.close(connection)
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK; " + _reset())
        except psycopg2.Error:
            self.close(connection)
            return
        self._give_back(connection)

    def close(self, connection: Session) -> None:
        """Give up on a connection: closed, and its slot kept until its backend is gone."""
        pool = self._pool(connection)
        ConnectionPool.close_quietly(connection)
        if connection.backend is None:
            pool.release(connection, broken=True)
        else:
            backends.end(pool, connection.backend, self._on_terminated)

    def _give_back(self, connection: Session) -> None:
        """Pool an idle, reset connection; one past its age is closed (its backend with it)."""
        self._pool(connection).release(connection, broken=self._too_old(connection))

    def _too_old(self, connection: Session) -> bool:
        """Older than POOL_MAX_AGE_S: it may hold defaults a superuser has since changed."""
        return time.monotonic() - connection.opened_at > self._settings.pool_max_age_s

    @staticmethod
    def _pool(connection: Session) -> ConnectionPool:
        assert connection.pool is not None, "released a connection that was never acquired"
        return connection.pool

    def close_all(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _reset() -> str:
    """The reset, with a seed from the OS's randomness: setseed() takes [-1, 1]. Joined, not
    formatted: between two round trips, `str.format` cost about 4 us more (docs/benchmarks.md)."""
    before, after = RESET
    return before + repr(randomness.randbits(52) / 2**51 - 1) + after
