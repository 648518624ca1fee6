"""Refuse statements that would end the gateway's transaction or undo its restrictions.

Each request runs inside a transaction the gateway opened, with `SET LOCAL` limits and,
for role-mapped tokens or `READ_ONLY`, a role or read-only mode. A `COMMIT` inside the SQL
would end that transaction early and run the rest without those limits, so it is
refused before anything is sent. This is a guard against mistakes and casual escapes;
the hard boundary is the privileges of the database roles (see README, Security).
"""

from __future__ import annotations

import re
from functools import lru_cache

from app.errors import ApiError

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
    | (?P<escape_string>[Ee]'(?:[^'\\]|\\.|'')*(?:'|$))
    | (?P<string>(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*(?:'|$))
    | (?P<ident>(?:[Uu]&)?"(?:[^"]|"")*(?:"|$))
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<semicolon>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_TRANSACTION_CONTROL = {"BEGIN", "START", "COMMIT", "END", "ABORT", "ROLLBACK"}
# The server's MAX_STATEMENT_TIMEOUT_MS holds for every request.
_ALWAYS_PROTECTED_SETTINGS = {"STATEMENT_TIMEOUT"}
_PROTECTED_SETTINGS = _ALWAYS_PROTECTED_SETTINGS | {
    "ROLE",
    "SESSION",
    "SESSION_AUTHORIZATION",
    "TRANSACTION",
    "DEFAULT_TRANSACTION_READ_ONLY",
    "TRANSACTION_READ_ONLY",
}


def _skip_block_comment(sql: str, start: int) -> int:
    """Block comments nest in PostgreSQL; return the index after the matching `*/`."""
    depth, i = 1, start
    while depth and i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def statement_words(sql: str) -> list[list[str]]:
    """The words and identifiers of each `;`-separated statement, upper-cased, outside
    string literals and comments (E'' strings honour backslash escapes)."""
    statements: list[list[str]] = [[]]
    i = 0
    while i < len(sql):
        match = _TOKEN.match(sql, i)
        assert match is not None  # the `other` alternative matches any character
        kind, i = match.lastgroup, match.end()
        if kind == "block_comment":
            i = _skip_block_comment(sql, i)
        elif kind == "dollar":
            end = sql.find(match.group(), i)
            i = len(sql) if end < 0 else end + len(match.group())
        elif kind == "word":
            statements[-1].append(match.group().upper())
        elif kind == "ident":
            # "role" is the same setting as role: compare quoted names by their content.
            name = match.group().removeprefix("U&").removeprefix("u&")[1:-1].replace('""', '"')
            statements[-1].append(name.upper())
        elif kind == "semicolon":
            statements.append([])
    return [words for words in statements if words]


# The same statements come back request after request (parameters travel separately).
# Only short texts are kept: the cache holds its keys, and bodies may be up to
# MAX_BODY_BYTES, so caching any text would let 1024 large queries pin ~1 GiB per worker.
_CACHEABLE_CHARS = 4096
_cached_words = lru_cache(maxsize=1024)(statement_words)


def statement_words_cached(sql: str) -> list[list[str]]:
    return _cached_words(sql) if len(sql) <= _CACHEABLE_CHARS else statement_words(sql)


def _ends_transaction(words: list[str]) -> bool:
    if words[0] not in _TRANSACTION_CONTROL:
        return False
    # ROLLBACK [WORK|TRANSACTION] TO SAVEPOINT stays inside the transaction.
    return not (words[0] == "ROLLBACK" and "TO" in words[1:3])


def _changes_setting(words: list[str], protected: set[str]) -> bool:
    if words[0] not in {"SET", "RESET"}:
        return False
    target = [w for w in words[1:3] if w != "LOCAL"]
    return bool(target) and target[0] in protected


def check_statement(sql: str, restricted: bool) -> None:
    """Raise a 400 for transaction control; a 403 for changing the statement timeout, and
    (when restricted) for changing the role or the read-only mode."""
    for words in statement_words_cached(sql):
        if _ends_transaction(words):
            raise ApiError(
                400,
                f"{words[0]} is not allowed: every request already runs in one transaction; "
                "use /transaction to group statements",
            )
        protected = _PROTECTED_SETTINGS if restricted else _ALWAYS_PROTECTED_SETTINGS
        if _changes_setting(words, protected) or (restricted and "SET_CONFIG" in words):
            raise ApiError(
                403,
                "changing the role, the read-only mode or the statement timeout is not allowed "
                "for this request; use timeout_ms for the timeout",
                sqlstate="42501",
            )
