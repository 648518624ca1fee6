"""What the gateway refuses before a statement reaches PostgreSQL.

This is not the security boundary: PostgreSQL's logins, privileges and read-only
transactions are (see docs/security.md, "Security"). It refuses only what is cheap to tell
exactly and would otherwise fail in a worse way:
- a NUL character: the wire protocol cannot carry one, and the driver would cut the SQL there;
- transaction control: each request is one transaction the gateway opened, so a COMMIT would
  end it early (ROLLBACK TO and RELEASE of a savepoint stay inside it and are allowed);
- text that PostgreSQL's lexer would scan in super-linear time, which no cancel interrupts;
- more statements than MAX_STATEMENTS.
Statement boundaries come from `app.sqlscan`, which reads the text as PostgreSQL does.
"""

from __future__ import annotations

from functools import lru_cache

from app.errors import ApiError
from app.sqlscan import LexerCostExceeded, Piece, Scanner

MAX_STATEMENTS = 1000
# About 30 ms of PostgreSQL's lexer (it backs up about 3 ns per unit; see app.sqlscan).
MAX_LEXER_COST = 10_000_000
_ENDS_TRANSACTION = frozenset({"BEGIN", "START", "COMMIT", "END", "ABORT", "ROLLBACK"})


def scanner(text: str) -> Scanner:
    """A scanner over the client's SQL that refuses NUL and super-linear input."""
    if "\x00" in text:
        raise ApiError(400, "the SQL holds a NUL character (U+0000), which PostgreSQL cannot take")
    return Scanner(text, max_lexer_cost=MAX_LEXER_COST)


def next_statement(scan: Scanner, position: int, standard_strings: bool) -> Piece | None:
    """The next statement to send, checked; None when the text is used up."""
    try:
        piece = scan.next_piece(position, standard_strings)
    except LexerCostExceeded:
        raise ApiError(
            400,
            "the SQL would make PostgreSQL's lexer back up too far (deeply nested /* comments "
            "or very long operator runs); simplify it",
            sqlstate="54001",
        ) from None
    if piece is not None and _ends_transaction(piece.words):
        raise ApiError(
            400,
            f"{piece.words[0]} is not allowed: every request already runs in one transaction; "
            "use /transaction to group statements (SAVEPOINT and ROLLBACK TO work)",
        )
    return piece


def statements(scan: Scanner, position: int, standard_strings: bool) -> list[Piece]:
    """Every statement from `position` on, checked: refused as a whole, before any is sent."""
    pieces: list[Piece] = []
    while (piece := next_statement(scan, position, standard_strings)) is not None:
        pieces.append(piece)
        if len(pieces) > MAX_STATEMENTS:
            raise ApiError(400, f"the SQL holds more than {MAX_STATEMENTS} statements")
        position = piece.end + 1
    return pieces


def check(text: str, standard_strings: bool = True) -> tuple[Piece, ...]:
    """Every statement of `text`, checked. The same short texts come back request after
    request (parameters travel inside the text, so those differ): such answers are cached,
    and only those, since a cache holds its keys (bodies may be a MiB each)."""
    if len(text) <= CACHEABLE_CHARS:
        return _check_cached(text, standard_strings)
    return tuple(statements(scanner(text), 0, standard_strings))


CACHEABLE_CHARS = 4096


@lru_cache(maxsize=1024)
def _check_cached(text: str, standard_strings: bool) -> tuple[Piece, ...]:
    return tuple(statements(scanner(text), 0, standard_strings))


def _ends_transaction(words: tuple[str, ...]) -> bool:
    if not words or words[0] not in _ENDS_TRANSACTION:
        return words[:2] == ("PREPARE", "TRANSACTION") and len(words) == 2
    if words[0] == "ROLLBACK":  # ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
        rest = words[2:] if words[1:2] in (("WORK",), ("TRANSACTION",)) else words[1:]
        return rest[:1] != ("TO",)
    return True
