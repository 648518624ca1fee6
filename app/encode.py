"""Python values -> JSON bytes: whole results, NDJSON lines and every other body.

Values arrive already converted by `app.typecast` (numeric as text, json spliced verbatim,
timestamps in ISO 8601), so encoding is one orjson call; anything without a JSON form
falls back to its text, so no value makes the server answer 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson


def check_unique_columns(names: Sequence[str]) -> None:
    """Two columns with one name would collapse into one JSON key: refuse instead."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DuplicateColumnError(name)
        seen.add(name)


class DuplicateColumnError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"the result has two columns named {name!r}; give them distinct aliases "
            f"(select ... as {name}_1, ... as {name}_2)"
        )


def _as_text(value: Any) -> str:
    """Last resort for a value no typecaster above covers: never fail the request."""
    return str(value)


def encode_row(names: Sequence[str], row: Iterable[Any], option: int = 0) -> bytes:
    return orjson.dumps(dict(zip(names, row, strict=True)), default=_as_text, option=option)


def encode_rows(names: Sequence[str], rows: Iterable[Iterable[Any]]) -> bytes:
    """A JSON array of row objects, byte for byte the rows of `encode_row` joined by `,`."""
    return orjson.dumps([dict(zip(names, row, strict=True)) for row in rows], default=_as_text)


def encode_lines(names: Sequence[str], rows: Iterable[Iterable[Any]]) -> bytes:
    """NDJSON: each row as `encode_row` gives it, one per line."""
    return b"".join(encode_row(names, row, orjson.OPT_APPEND_NEWLINE) for row in rows)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_as_text)
