"""The seed-compatible requests of the design and the exact bodies they must answer."""

from __future__ import annotations

SEED_QUERIES = (
    "create table account (id_user serial PRIMARY KEY, username VARCHAR(50) NOT NULL)",
    "insert into account (username) values ('pmbrull')",
    "select * from account",
)
SEED_RESPONSES = (
    {"result": "OK"},
    {"result": "OK"},
    {"result": [{"id_user": 1, "username": "pmbrull"}]},
)
