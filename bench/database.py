"""The benchmark's PostgreSQL: one server, the deployment's logins, seeded tables.

Every system logs in as `gateway` (owner of database `bench`, from the manifests' roles.sql),
the way production runs the gateway, so no system gets superuser shortcuts.
"""

from __future__ import annotations

from pathlib import Path

from harness.local.postgres import LocalPostgres
from harness.local.provision import Logins, provision

ITEMS = 100_000  # the rows the seed below inserts


class BenchDatabase:
    def __init__(self, workdir: Path) -> None:
        self.server = LocalPostgres(workdir / "pgdata")
        self.logins = Logins(database="bench")

    @property
    def dsn(self) -> str:
        return self.logins.gateway_dsn(self.server)

    def start(self) -> None:
        self.server.start()
        provision(self.server, self.logins)
        self.server.execute(
            "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL,"
            " score double precision NOT NULL, created_at timestamptz NOT NULL)",
            "INSERT INTO items SELECT g, 'item ' || g, g * 0.25,"
            " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'"
            " FROM generate_series(1, 100000) g",
            "CREATE TABLE events (id bigserial PRIMARY KEY, item_id integer NOT NULL,"
            " note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            "VACUUM ANALYZE items",
            "VACUUM ANALYZE events",
            dsn=self.dsn,
        )

    def stop(self) -> None:
        self.server.stop()
