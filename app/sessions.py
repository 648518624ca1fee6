"""Database sessions: a pool per login, each connection handed out in a pristine state.

Every role a token maps to logs in as itself, with its own password and its own pool, so
its privileges are PostgreSQL's to enforce; nothing runs `SET ROLE` from a more privileged
login. A connection goes back to its pool only after RESET has run in the same round trip
as the request's COMMIT (or after its ROLLBACK): the parts of pgbouncer's `DISCARD ALL`
(which itself may not share a message with other statements) that undo session state.
Temporary tables, prepared statements, cursors, session advisory locks, LISTEN, settings,
role, session authorization and sequence values are all undone. A connection whose reset
fails, whose statement was cancelled, or that broke, is closed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg2
import psycopg2.extensions as ext
from gevent.monkey import get_original

from app.errors import unavailable
from app.pool import ConnectFailed, ConnectionPool, PoolTimeout
from app.settings import Settings
from app.typecast import SESSION_OPTIONS, register_typecasters
from app.wait import GatewayConnection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3
# What DISCARD ALL undoes, less DISCARD PLANS (cached plans are nobody's state) and
# RESET ROLE (SET SESSION AUTHORIZATION DEFAULT resets the role too): each statement more
# is a result more to parse on both sides of every request.
RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; "
    "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)
# Whether the login may create temporary tables (app.transaction reads RETURNING rows
# through one): asked once per connection.
_CAN_CREATE_TEMP = "SELECT has_database_privilege(current_database(), 'TEMP')"
# The OS's select even in a gevent worker: a zero timeout never blocks, and the cooperative
# version cost about 4 % of a request's CPU.
_select = get_original("select", "select")


class Session(GatewayConnection):
    """A pooled connection and what the gateway knows about its login."""

    pool: ConnectionPool | None = None
    can_create_temp = False


def _has_pending_input(connection: ext.connection) -> bool:
    """An idle connection has nothing to read; data or EOF means the server hung up."""
    try:
        readable, _, _ = _select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)


class Logins:
    """One bounded pool per login: the gateway's own, and one per role a token maps to."""

    def __init__(self, settings: Settings, on_change: Callable[[ConnectionPool], None]) -> None:
        self._settings = settings
        dsns: dict[str | None, dict[str, str]] = {None: settings.dsn, **settings.role_dsns}
        self._pools = {
            role: ConnectionPool(self._connector(dsn), settings.pool_max, on_change, login)
            for role, dsn in dsns.items()
            for login in [dsn.get("user", "")]
        }

    @property
    def main(self) -> ConnectionPool:
        return self._pools[None]

    def pools(self) -> list[ConnectionPool]:
        return list(self._pools.values())

    def _connector(self, dsn: dict[str, str]) -> Callable[[], ext.connection]:
        def connect() -> ext.connection:
            parameters = dict(dsn)
            parameters["options"] = f"{parameters.get('options', '')} {SESSION_OPTIONS}".strip()
            parameters.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
            parameters.setdefault("application_name", "pg-gateway")
            connection = psycopg2.connect(**parameters, connection_factory=Session)
            connection.autocommit = True
            register_typecasters(connection)
            with connection.cursor() as cursor:
                cursor.execute(_CAN_CREATE_TEMP)
                connection.can_create_temp = bool(cursor.fetchone()[0])
            return connection

        return connect

    def acquire(self, role: str | None, timeout_s: float | None = None) -> Session:
        """A live connection of that role's login; a 503 when none comes in time.

        Before anything is sent, a connection the server has closed (PostgreSQL restarted)
        is replaced together with its idle siblings: such a request is retried once."""
        pool = self._pools[role if role in self._pools else None]
        wait = self._settings.pool_timeout_ms / 1000 if timeout_s is None else timeout_s
        for _attempt in range(2):
            try:
                connection = pool.acquire(wait)
            except PoolTimeout:
                raise unavailable("all database connections are busy; try again shortly") from None
            except ConnectFailed as error:
                log.warning("cannot connect to PostgreSQL: %s", str(error).strip())
                raise unavailable("database unavailable") from None
            if not connection.closed and not _has_pending_input(connection):
                connection.pool = pool
                return connection
            log.info("replacing a database connection the server closed")
            pool.release(connection, broken=True)
            pool.discard_idle()
        raise unavailable("database unavailable")

    def commit(self, connection: Session) -> None:
        """Reset the session and COMMIT in one round trip, then pool the connection.

        The reset runs inside the transaction, before COMMIT: if anything fails, nothing is
        committed and the error is raised; the caller then abandons the connection."""
        connection.stop_deadline()
        with connection.cursor() as cursor:
            cursor.execute(f"{RESET}; COMMIT")
        self._pool(connection).release(self._forget_messages(connection))

    def abandon(self, connection: Session) -> None:
        """Roll back and reset, or close when the connection cannot be trusted again."""
        connection.stop_deadline()
        if connection.closed or connection.cancelled:
            self.close(connection)
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"ROLLBACK; {RESET}")
        except psycopg2.Error:
            self.close(connection)
            return
        self._pool(connection).release(self._forget_messages(connection))

    def close(self, connection: Session) -> None:
        self._pool(connection).release(connection, broken=True)

    @staticmethod
    def _pool(connection: Session) -> ConnectionPool:
        assert connection.pool is not None, "released a connection that was never acquired"
        return connection.pool

    @staticmethod
    def _forget_messages(connection: Session) -> Session:
        """NOTICEs and NOTIFYs the driver kept belong to the request that caused them."""
        del connection.notices[:]
        del connection.notifies[:]
        return connection

    def close_all(self) -> None:
        for pool in self._pools.values():
            pool.close()
