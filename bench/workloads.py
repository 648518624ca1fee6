"""The four workloads, as each system spells them.

The gateway binds `%s` parameters through psycopg2; postgres-meta's `POST /query` takes
`{"query", "parameters"}` with `$1` placeholders (node-postgres binds them server side),
so neither gets literal values pasted into the SQL; pgweb has no parameters, so its SQL
carries the id. `{ID}` in a body is replaced by wrk's
Lua script with a random id in 1..ITEMS for every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote_plus

from bench.database import ITEMS


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    gateway_sql: str  # psycopg2 placeholders: used by the gateway and the direct driver
    pgmeta_sql: str  # node-postgres placeholders
    random_id: bool  # one parameter: a random id in 1..ITEMS

    def gateway_body(self) -> str:
        params = ',"params":[{ID}]' if self.random_id else ""
        return f'{{"query":"{self.gateway_sql}"{params}}}'

    def pgmeta_body(self) -> str:
        params = ',"parameters":[{ID}]' if self.random_id else ""
        return f'{{"query":"{self.pgmeta_sql}"{params}}}'

    def pgweb_body(self) -> str:
        """pgweb's `POST /api/query` takes a form field and no parameters: the id is
        written into the SQL (by wrk, per request)."""
        return "query=" + quote_plus(self.pgmeta_sql.replace("$1", "ID")).replace("ID", "{ID}")


WORKLOADS = (
    Workload("select1", "(a) select 1", "select 1", "select 1", random_id=False),
    Workload(
        "point",
        f"(b) point select by PK ({ITEMS:,} rows)",
        "select id, name, score, created_at from items where id = %s",
        "select id, name, score, created_at from items where id = $1",
        random_id=True,
    ),
    Workload(
        "rows1000",
        "(c) 1,000-row result",
        "select id, name, score, created_at from items where id <= 1000 order by id",
        "select id, name, score, created_at from items where id <= 1000 order by id",
        random_id=False,
    ),
    Workload(
        "insert",
        "(d) single-row insert",
        "insert into events (item_id, note) values (%s, 'bench')",
        "insert into events (item_id, note) values ($1, 'bench')",
        random_id=True,
    ),
)
