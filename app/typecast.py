"""PostgreSQL values -> Python values that encode to JSON losslessly.

The driver's default conversions lose information for JSON purposes (numeric becomes a
float-like Decimal, interval a timedelta without months, infinite timestamps raise) and
fail on arrays it does not know or whose bounds are not 1 (`[2:3]={4,5}`). So each such
type gets a typecaster working from PostgreSQL's own text output; the session options
below make that output ISO 8601. Types the driver has no caster for arrive as text: an
array of them (enum, composite, record, domain, multirange, bit, vector...) is parsed here
with its element type looked up once per process (`TypeCatalog`).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg2.extensions as ext

# Startup parameters that fix the text formats the typecasters parse and the way the SQL is
# read (app.sqlscan). They are also the values `RESET ALL` returns to.
SESSION_OPTIONS = (
    "-c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c bytea_output=hex "
    "-c TimeZone=UTC -c extra_float_digits=1 -c standard_conforming_strings=on"
)

_DATETIME = re.compile(
    r"^(?P<year>\d{4,})(?P<rest>-\d\d-\d\d(?: \d\d:\d\d:\d\d(?:\.\d+)?)?)"
    r"(?P<offset>[+-]\d\d(?::\d\d){0,2})?(?P<bc> BC)?$"
)
_TIME = re.compile(r"^(?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?)(?P<offset>[+-]\d\d(?::\d\d){0,2})?$")

Convert = Callable[[str], Any]


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


def vector(text: str) -> list[int]:
    """int2vector and oidvector print as space-separated integers."""
    return [int(item) for item in text.split()]


_ARRAY_ELEMENTS: dict[str, re.Pattern[str]] = {}


def _array_elements(delimiter: str) -> re.Pattern[str]:
    if delimiter not in _ARRAY_ELEMENTS:
        separator = re.escape(delimiter)
        _ARRAY_ELEMENTS[delimiter] = re.compile(
            rf'\{{|\}}|{separator}|"((?:[^"\\]|\\.)*)"|([^{{}}"{separator}]+)'
        )
    return _ARRAY_ELEMENTS[delimiter]


def without_bounds(text: str) -> str:
    """Array output with lower bounds other than 1 starts `[2:3]={...}`: JSON arrays have
    no bounds, so the decoration goes."""
    return text[text.index("=") + 1 :] if text.startswith("[") else text


def parse_array(text: str, convert: Convert = str, delimiter: str = ",") -> Any:
    """PostgreSQL's array output as nested lists, for element types the driver has no
    caster for: NULL becomes None, quoted elements are unescaped, every one converted."""
    stack: list[list[Any]] = []
    result: list[Any] = []
    for match in _array_elements(delimiter).finditer(without_bounds(text)):
        mark = match.group()
        if mark == "{":
            stack.append([])
        elif mark == "}":
            done = stack.pop()
            if stack:
                stack[-1].append(done)
            else:
                result = done
        elif match.group(1) is not None:
            stack[-1].append(convert(re.sub(r"\\(.)", r"\1", match.group(1))))
        elif match.group(2) is not None and (bare := match.group(2).strip()):
            stack[-1].append(None if bare.upper() == "NULL" else convert(bare))
    return result


def _nullable(convert: Convert) -> Callable[[str | None, Any], Any]:
    def cast(value: str | None, _cursor: Any) -> Any:
        return None if value is None else convert(value)

    return cast


def _cast_float(value: str | None, _cursor: Any) -> float | str | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else value


def _cast_datetime(value: str | None, _cursor: Any) -> str | None:
    return None if value is None else iso_datetime(value)


# (type OIDs, array type OIDs, conversion of PostgreSQL's text output)
_CONVERSIONS: Sequence[tuple[tuple[int, ...], tuple[int, ...], Convert]] = (
    ((700, 701), (1021, 1022), float_value),
    ((1700,), (1231,), str),  # numeric: a string keeps every digit
    ((1082, 1114, 1184), (1182, 1115, 1185), iso_datetime),  # date, timestamp[tz]
    ((1083, 1266), (1183, 1270), iso_time),  # time, timetz
    ((1186,), (1187,), str),  # interval, already ISO 8601 by IntervalStyle
    ((17,), (1001,), base64_bytea),
    ((114, 3802), (199, 3807), json_fragment),
    ((22, 30), (1006, 1013), vector),  # int2vector, oidvector
    # Types the driver already returns as text, but whose arrays it would not split:
    # uuid, inet, cidr, macaddr, macaddr8, money, record, bit, varbit.
    (
        (2950, 869, 650, 829, 774, 790, 2249, 1560, 1562),
        (2951, 1041, 651, 1040, 775, 791, 2287, 1561, 1563),
        str,
    ),
    # Ranges and multiranges: PostgreSQL's own text ('[1,5)') instead of Range objects.
    ((3904, 3926, 3906, 3908, 3910, 3912), (3905, 3927, 3907, 3909, 3911, 3913), str),
    ((4451, 4532, 4533, 4534, 4535, 4536), (6150, 6151, 6152, 6153, 6155, 6157), str),
)
# The hot conversions skip `_nullable`'s extra call per value.
_DIRECT_CASTS: dict[Convert, Callable[[str | None, Any], Any]] = {
    float_value: _cast_float,
    iso_datetime: _cast_datetime,
}
SCALAR_CONVERSIONS: dict[int, Convert] = {
    oid: convert for oids, _arrays, convert in _CONVERSIONS for oid in oids
}


def _bounds_tolerant(oids: tuple[int, ...], caster: Any, name: str) -> Any:
    """An array caster of the driver's (fast, in C), fed the text without bounds."""

    def cast(value: str | None, cursor: Any) -> Any:
        return None if value is None else caster(without_bounds(value), cursor)

    return ext.new_type(oids, name, cast)


def _typecasters() -> list[Any]:
    casters = []
    ours = set()
    for oids, array_oids, convert in _CONVERSIONS:
        name = f"PGW_{oids[0]}"
        scalar = ext.new_type(oids, name, _DIRECT_CASTS.get(convert) or _nullable(convert))
        casters.append(scalar)
        array = ext.new_array_type(array_oids, name + "_ARRAY", scalar)
        casters.append(_bounds_tolerant(array_oids, array, name + "_ARRAY"))
        ours.update(array_oids)
    # The driver's own arrays (integers, text, boolean...): its caster, bounds tolerated.
    for oid, caster in ext.string_types.items():
        if caster.name.endswith("ARRAY") and oid not in ours:
            casters.append(_bounds_tolerant((oid,), caster, f"PGW_{oid}_ARRAY"))
    return casters


_TYPECASTERS = _typecasters()


def register_typecasters(connection: ext.connection) -> None:
    """Install the conversions on one connection only, leaving the driver's globals alone."""
    for caster in _TYPECASTERS:
        ext.register_type(caster, connection)


def known(oid: int) -> bool:
    """True when a caster of this module or of the driver reads the type."""
    return oid in _KNOWN_OIDS or oid in ext.string_types


_KNOWN_OIDS = frozenset(oid for caster in _TYPECASTERS for oid in caster.values)

# The catalog query for types no caster knows: arrays are parsed with their element's
# converter (a domain's base type); anything else stays PostgreSQL's text.
TYPE_QUERY = """
WITH RECURSIVE base(oid, element, delimiter, base) AS (
    SELECT t.oid, t.typelem, t.typdelim, t.typelem
    FROM pg_catalog.pg_type t WHERE t.oid = ANY(%s) AND t.typcategory = 'A'
  UNION ALL
    SELECT b.oid, b.element, b.delimiter, d.typbasetype
    FROM base b JOIN pg_catalog.pg_type d ON d.oid = b.base AND d.typtype = 'd'
)
SELECT b.oid::int, b.delimiter, b.base::int FROM base b
JOIN pg_catalog.pg_type t ON t.oid = b.base WHERE t.typtype <> 'd'
"""


class TypeCatalog:
    """Per process: how to read each array type no caster knows, by its OID."""

    def __init__(self) -> None:
        self._converters: dict[int, Convert | None] = {}

    def missing(self, oids: Sequence[int]) -> list[int]:
        return sorted({oid for oid in oids if not known(oid) and oid not in self._converters})

    def learn(self, oids: Sequence[int], rows: Sequence[tuple[int, str, int]]) -> None:
        """Record the catalog's answer to TYPE_QUERY for `oids` (non-arrays: None)."""
        for oid in oids:
            self._converters.setdefault(oid, None)
        for oid, delimiter, base in rows:
            element = SCALAR_CONVERSIONS.get(base) or _driver_scalar(base)
            self._converters[oid] = _array_of(element, delimiter)

    def converters(self, oids: Sequence[int]) -> dict[int, Convert]:
        """Column index -> converter, for the columns whose values arrive as bare text."""
        found = {}
        for index, oid in enumerate(oids):
            convert = self._converters.get(oid)
            if convert is not None:
                found[index] = convert
        return found


def _driver_scalar(oid: int) -> Convert:
    scalar = ext.string_types.get(oid)
    if scalar is None:
        return str
    return lambda text: scalar(text, None)


def _array_of(element: Convert, delimiter: str) -> Convert:
    return lambda text: parse_array(text, element, delimiter)
