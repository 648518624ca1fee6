"""PostgreSQL values -> JSON, losslessly.

The driver's default conversions lose information for JSON purposes (numeric becomes a
float-like Decimal, interval a timedelta without months, infinite timestamps raise), so
each such type gets a typecaster that works from PostgreSQL's own text output. The
connection is configured (see `SESSION_OPTIONS`) so that output is ISO 8601.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import psycopg2.extensions as ext

# Startup parameters that fix the text formats the typecasters parse. They are also the
# values `RESET ALL` returns to, so one request's `SET` cannot leak into the next.
SESSION_OPTIONS = (
    "-c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c bytea_output=hex "
    "-c TimeZone=UTC -c extra_float_digits=1"
)

_DATETIME = re.compile(
    r"^(?P<year>\d{4,})(?P<rest>-\d\d-\d\d(?: \d\d:\d\d:\d\d(?:\.\d+)?)?)"
    r"(?P<offset>[+-]\d\d(?::\d\d){0,2})?(?P<bc> BC)?$"
)
_TIME = re.compile(r"^(?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?)(?P<offset>[+-]\d\d(?::\d\d){0,2})?$")


def _iso_offset(offset: str | None) -> str:
    """PostgreSQL prints `+05` where ISO 8601 wants `+05:00`."""
    if not offset:
        return ""
    return offset + ":00" if len(offset) == 3 else offset


def iso_datetime(text: str) -> str:
    """A date or timestamp in ISO 8601; BC years become astronomical negative years."""
    if text[4:5] == "-" and text[:4].isdigit() and not text.endswith("BC"):
        # The common case (four-digit AD year, ISO DateStyle) without the regex: one row
        # of a big result may hold several timestamps.
        if len(text) <= 10:
            return text
        sign = max(text.rfind("+", 19), text.rfind("-", 19))
        text = text[:10] + "T" + text[11:]
        return text + ":00" if sign > 0 and len(text) - sign == 3 else text
    match = _DATETIME.match(text)
    if match is None:
        return text  # 'infinity', '-infinity', or a DateStyle changed by the client
    year = int(match["year"])
    if match["bc"]:
        year = 1 - year
    sign = "-" if year < 0 else ""
    rest = match["rest"].replace(" ", "T")
    return f"{sign}{abs(year):04d}{rest}{_iso_offset(match['offset'])}"


def iso_time(text: str) -> str:
    match = _TIME.match(text)
    if match is None:
        return text
    return match["clock"] + _iso_offset(match["offset"])


def float_value(text: str) -> float | str:
    """Finite floats are numbers; NaN and the infinities have no JSON number."""
    value = float(text)
    return value if math.isfinite(value) else text


def base64_bytea(text: str) -> str:
    if text.startswith("\\x"):
        return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")
    return text  # bytea_output changed by the client: keep PostgreSQL's text


def json_fragment(text: str) -> orjson.Fragment:
    """Splice json/jsonb verbatim so big or precise numbers keep every digit.

    PostgreSQL rejects raw control characters inside JSON strings, so any newline in
    the text is insignificant whitespace and can be flattened for NDJSON framing.
    """
    return orjson.Fragment(text.replace("\n", " ").replace("\r", " "))


def _nullable(convert: Callable[[str], Any]) -> Callable[[str | None, Any], Any]:
    def cast(value: str | None, _cursor: Any) -> Any:
        return None if value is None else convert(value)

    return cast


# (type OIDs, array type OIDs, conversion of PostgreSQL's text output)
_CONVERSIONS: Sequence[tuple[tuple[int, ...], tuple[int, ...], Callable[[str], Any]]] = (
    ((700, 701), (1021, 1022), float_value),
    ((1700,), (1231,), str),  # numeric: a string keeps every digit
    ((1082, 1114, 1184), (1182, 1115, 1185), iso_datetime),  # date, timestamp[tz]
    ((1083, 1266), (1183, 1270), iso_time),  # time, timetz
    ((1186,), (1187,), str),  # interval, already ISO 8601 by IntervalStyle
    ((17,), (1001,), base64_bytea),
    ((114, 3802), (199, 3807), json_fragment),
    # Types the driver already returns as text, but whose arrays it would not split.
    ((2950, 869, 650, 829, 774, 790), (2951, 1041, 651, 1040, 775, 791), str),
    # Ranges: PostgreSQL's own text ('[1,5)') instead of the driver's Range objects.
    ((3904, 3926, 3906, 3908, 3910, 3912), (3905, 3927, 3907, 3909, 3911, 3913), str),
)


def _cast_float(value: str | None, _cursor: Any) -> float | str | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else value


def _cast_datetime(value: str | None, _cursor: Any) -> str | None:
    return None if value is None else iso_datetime(value)


# The hot conversions skip `_nullable`'s extra call per value.
_DIRECT_CASTS: dict[Callable[[str], Any], Callable[[str | None, Any], Any]] = {
    float_value: _cast_float,
    iso_datetime: _cast_datetime,
}


def _typecasters() -> list[Any]:
    casters = []
    for oids, array_oids, convert in _CONVERSIONS:
        name = f"PGW_{oids[0]}"
        cast = _DIRECT_CASTS.get(convert) or _nullable(convert)
        scalar = ext.new_type(oids, name, cast)
        casters.append(scalar)
        casters.append(ext.new_array_type(array_oids, name + "_ARRAY", scalar))
    return casters


_TYPECASTERS = _typecasters()


def register_typecasters(connection: ext.connection) -> None:
    """Install the conversions on one connection only, leaving the driver's globals alone."""
    for caster in _TYPECASTERS:
        ext.register_type(caster, connection)


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
