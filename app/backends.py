"""Ending the backend of a connection the gateway gave up on, before its slot is reused.

Closing a connection does not stop its backend: a statement runs on until it next writes
to the client, and PL/pgSQL that catches `query_canceled` outlives every cancel (one such
loop per request left 91 backends running, and PostgreSQL out of connections). A login may
terminate its own backends, so the gateway does it itself, from a fresh connection of the
same login that then takes the closed connection's place in the pool. Until the backend is
known to be gone the slot stays taken: a pool's connections never outnumber its backends,
whatever the SQL did. The backend is named by its pid and its start time (read when the
connection opened), so a pid PostgreSQL has since reused is never terminated by mistake.
While PostgreSQL cannot be reached (restarting, stalled) the attempt is repeated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.pool import ConnectionPool
from app.wait import CANCEL_GRACE_S

log = logging.getLogger(__name__)

# How long pg_terminate_backend waits for the backend to exit before answering false.
TERMINATE_WAIT_MS = 5000
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0
_TERMINATE = (
    "SELECT pg_catalog.pg_terminate_backend(pid, %s) FROM pg_catalog.pg_stat_activity "
    "WHERE pid = %s AND backend_start = %s::timestamptz"
)

Backend = tuple[int, str]  # pid, backend_start as text


def end(pool: ConnectionPool, backend: Backend, on_terminated: Callable[[str], None]) -> None:
    """Have `backend` ended in the background; its slot in `pool` stays taken meanwhile."""
    threading.Thread(
        target=_end, args=(pool, backend, on_terminated), name="end-backend", daemon=True
    ).start()


def _end(pool: ConnectionPool, backend: Backend, on_terminated: Callable[[str], None]) -> None:
    delay = FIRST_RETRY_S
    connection = None
    while True:
        try:
            connection = connection or pool.connect()
            connection.start_deadline(TERMINATE_WAIT_MS / 1000 + CANCEL_GRACE_S)
            with connection.cursor() as cursor:
                cursor.execute(_TERMINATE, (TERMINATE_WAIT_MS, *backend))
                row = cursor.fetchone()
            connection.stop_deadline()
        except Exception as error:  # whatever it is, the slot must not be lost: try again
            log.warning("cannot end backend %s yet: %s", backend[0], str(error).strip())
            if connection is not None:
                ConnectionPool.close_quietly(connection)
                connection = None
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
            continue
        if row is None or row[0]:
            break
        log.warning("backend %s has not exited yet; terminating it again", backend[0])
    if row is not None:
        on_terminated(pool.login)
        log.warning("ended backend %s, which outlived its request", backend[0])
    pool.release(connection)
