"""The value encoding table (design: "Value encoding"), row by row.

Each row feeds PostgreSQL's own text output (DateStyle ISO, IntervalStyle iso_8601,
bytea_output hex, TimeZone UTC; captured from a real server) through the typecasters the
app installs on its connections, then through `encode_row` and back through a JSON parser
that keeps every digit.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from app.encode import DuplicateColumnError, check_unique_columns, dumps, encode_row
from app.typecast import iso_datetime, iso_time
from tests.unit.gateway.conftest import cast

# OIDs of the built-in types.
INT2, INT4, INT8, OID = 21, 23, 20, 26
FLOAT4, FLOAT8, NUMERIC = 700, 701, 1700
BOOL, TEXT, VARCHAR, BPCHAR, NAME = 16, 25, 1043, 1042, 19
JSON, JSONB = 114, 3802
DATE, TIME, TIMETZ, TIMESTAMP, TIMESTAMPTZ, INTERVAL = 1082, 1083, 1266, 1114, 1184, 1186
UUID, INET, CIDR, MACADDR, MACADDR8, MONEY = 2950, 869, 650, 829, 774, 790
BYTEA = 17
INT4_ARRAY, INT8_ARRAY, NUMERIC_ARRAY, FLOAT8_ARRAY = 1007, 1016, 1231, 1022
BOOL_ARRAY, TEXT_ARRAY, DATE_ARRAY, TIMESTAMPTZ_ARRAY = 1000, 1009, 1182, 1185
JSON_ARRAY, JSONB_ARRAY, UUID_ARRAY, BYTEA_ARRAY = 199, 3807, 2951, 1001
INTERVAL_ARRAY, INET_ARRAY, TIMETZ_ARRAY = 1187, 1041, 1270

BIG_NUMERIC = "123456789012345678901234567890.000000001"
A_UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

# (type, oid, PostgreSQL text output, expected JSON value after a lossless parse)
ENCODING_TABLE: list[tuple[str, int, str, Any]] = [
    # integers -> exact JSON numbers
    ("int2 min", INT2, "-32768", -32768),
    ("int2 max", INT2, "32767", 32767),
    ("int4 min", INT4, "-2147483648", -2147483648),
    ("int4 max", INT4, "2147483647", 2147483647),
    ("int8 min", INT8, "-9223372036854775808", -9223372036854775808),
    ("int8 max", INT8, "9223372036854775807", 9223372036854775807),
    ("oid", OID, "4294967295", 4294967295),
    # float4/float8 -> numbers; NaN and the infinities -> strings
    ("float4", FLOAT4, "1.5", Decimal("1.5")),
    ("float4 max", FLOAT4, "3.4028235e+38", Decimal("3.4028235e+38")),
    ("float4 NaN", FLOAT4, "NaN", "NaN"),
    ("float4 Infinity", FLOAT4, "Infinity", "Infinity"),
    ("float4 -Infinity", FLOAT4, "-Infinity", "-Infinity"),
    ("float8", FLOAT8, "0.1", Decimal("0.1")),
    ("float8 max", FLOAT8, "1.7976931348623157e+308", Decimal("1.7976931348623157e+308")),
    ("float8 min subnormal", FLOAT8, "5e-324", Decimal("5e-324")),
    ("float8 negative zero", FLOAT8, "-0", Decimal("-0.0")),
    ("float8 NaN", FLOAT8, "NaN", "NaN"),
    ("float8 Infinity", FLOAT8, "Infinity", "Infinity"),
    ("float8 -Infinity", FLOAT8, "-Infinity", "-Infinity"),
    # numeric -> exact string
    ("numeric big", NUMERIC, BIG_NUMERIC, BIG_NUMERIC),
    ("numeric scale kept", NUMERIC, "1.10", "1.10"),
    ("numeric tiny", NUMERIC, "-0.0000000000000000000001", "-0.0000000000000000000001"),
    ("numeric NaN", NUMERIC, "NaN", "NaN"),
    ("numeric Infinity", NUMERIC, "Infinity", "Infinity"),
    # boolean
    ("bool true", BOOL, "t", True),
    ("bool false", BOOL, "f", False),
    # text types
    ("text", TEXT, 'héllo "quoted" \\ back\nslash', 'héllo "quoted" \\ back\nslash'),
    ("varchar", VARCHAR, "pmbrull", "pmbrull"),
    ("bpchar", BPCHAR, "ab  ", "ab  "),
    ("name", NAME, "pg_class", "pg_class"),
    # json/jsonb -> nested JSON, every digit kept
    (
        "jsonb nested",
        JSONB,
        '{"a": [1, 2.50, 12345678901234567890123456789], "b": {"c": null}}',
        {"a": [1, Decimal("2.50"), 12345678901234567890123456789], "b": {"c": None}},
    ),
    (
        "json with newlines",
        JSON,
        '{\n  "a": 1.000000000000000000001,\n  "s": "a\\nb"\n}',
        {"a": Decimal("1.000000000000000000001"), "s": "a\nb"},
    ),
    ("json string scalar", JSON, '"text"', "text"),
    ("json null scalar", JSONB, "null", None),
    ("json number scalar", JSONB, "1e400", Decimal("1e400")),
    # arrays, element-wise, with NULL elements
    ("int4[]", INT4_ARRAY, "{1,NULL,3}", [1, None, 3]),
    ("int4[][]", INT4_ARRAY, "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
    (
        "int8[]",
        INT8_ARRAY,
        "{9223372036854775807,-9223372036854775808,NULL}",
        [9223372036854775807, -9223372036854775808, None],
    ),
    (
        "numeric[]",
        NUMERIC_ARRAY,
        "{1.10,NULL,NaN," + BIG_NUMERIC + "}",
        ["1.10", None, "NaN", BIG_NUMERIC],
    ),
    (
        "float8[]",
        FLOAT8_ARRAY,
        "{1.5,NaN,Infinity,-Infinity,NULL}",
        [Decimal("1.5"), "NaN", "Infinity", "-Infinity", None],
    ),
    ("bool[]", BOOL_ARRAY, "{t,f,NULL}", [True, False, None]),
    ("text[]", TEXT_ARRAY, '{a,"b c",NULL,"NULL"}', ["a", "b c", None, "NULL"]),
    ("date[]", DATE_ARRAY, "{2024-02-29,infinity,NULL}", ["2024-02-29", "infinity", None]),
    (
        "timestamptz[]",
        TIMESTAMPTZ_ARRAY,
        '{"2020-01-01 00:00:00+00",NULL,infinity,"2021-06-15 07:00:45.123456+00"}',
        ["2020-01-01T00:00:00+00:00", None, "infinity", "2021-06-15T07:00:45.123456+00:00"],
    ),
    (
        "timetz[]",
        TIMETZ_ARRAY,
        '{12:00:00+05:30,"13:00:00-03",NULL}',
        [
            "12:00:00+05:30",
            "13:00:00-03:00",
            None,
        ],
    ),
    (
        "json[]",
        JSON_ARRAY,
        '{"{\\"a\\": 1}",NULL,"[1, 2]"}',
        [{"a": 1}, None, [1, 2]],
    ),
    (
        "jsonb[] with escaped quote",
        JSONB_ARRAY,
        '{"{\\"k\\": \\"v\\\\\\"q\\"}"}',
        [{"k": 'v"q'}],
    ),
    ("uuid[]", UUID_ARRAY, "{" + A_UUID + ",NULL}", [A_UUID, None]),
    ("bytea[]", BYTEA_ARRAY, '{"\\\\x0102",NULL,"\\\\x"}', ["AQI=", None, ""]),
    ("interval[]", INTERVAL_ARRAY, "{P1D,PT0S,NULL}", ["P1D", "PT0S", None]),
    ("inet[]", INET_ARRAY, "{192.168.0.1/24,::1,NULL}", ["192.168.0.1/24", "::1", None]),
    # date and time types -> ISO 8601
    ("date", DATE, "2024-02-29", "2024-02-29"),
    ("date infinity", DATE, "infinity", "infinity"),
    ("date -infinity", DATE, "-infinity", "-infinity"),
    ("date BC", DATE, "0044-03-15 BC", "-0043-03-15"),
    ("date 1 BC is year 0", DATE, "0001-01-01 BC", "0000-01-01"),
    ("time", TIME, "12:34:56", "12:34:56"),
    ("time fractional", TIME, "23:59:59.999999", "23:59:59.999999"),
    ("time 24:00", TIME, "24:00:00", "24:00:00"),
    ("timetz +05:30", TIMETZ, "12:34:56.5+05:30", "12:34:56.5+05:30"),
    ("timetz +00", TIMETZ, "12:34:56+00", "12:34:56+00:00"),
    ("timetz -03", TIMETZ, "12:34:56-03", "12:34:56-03:00"),
    ("timestamp", TIMESTAMP, "2024-01-02 03:04:05", "2024-01-02T03:04:05"),
    (
        "timestamp fractional",
        TIMESTAMP,
        "2024-01-02 03:04:05.123456",
        "2024-01-02T03:04:05.123456",
    ),
    ("timestamp infinity", TIMESTAMP, "infinity", "infinity"),
    ("timestamp -infinity", TIMESTAMP, "-infinity", "-infinity"),
    ("timestamp BC", TIMESTAMP, "0044-03-15 12:00:00 BC", "-0043-03-15T12:00:00"),
    ("timestamptz +00", TIMESTAMPTZ, "2024-01-02 03:04:05+00", "2024-01-02T03:04:05+00:00"),
    (
        "timestamptz +05:30 fractional",
        TIMESTAMPTZ,
        "2024-01-02 03:04:05.5+05:30",
        "2024-01-02T03:04:05.5+05:30",
    ),
    ("timestamptz -08", TIMESTAMPTZ, "2024-01-02 03:04:05-08", "2024-01-02T03:04:05-08:00"),
    (
        "timestamptz BC",
        TIMESTAMPTZ,
        "0044-03-15 12:00:00+00 BC",
        "-0043-03-15T12:00:00+00:00",
    ),
    ("timestamptz infinity", TIMESTAMPTZ, "infinity", "infinity"),
    ("timestamptz -infinity", TIMESTAMPTZ, "-infinity", "-infinity"),
    # interval -> ISO 8601 duration
    ("interval", INTERVAL, "P1Y2M3DT4H5M6.789S", "P1Y2M3DT4H5M6.789S"),
    ("interval zero", INTERVAL, "PT0S", "PT0S"),
    ("interval negative", INTERVAL, "P-1Y-2M3DT-4H-5M-6S", "P-1Y-2M3DT-4H-5M-6S"),
    # uuid, network types -> strings
    ("uuid", UUID, A_UUID, A_UUID),
    ("inet v4", INET, "192.168.1.5/24", "192.168.1.5/24"),
    ("inet v6", INET, "::1", "::1"),
    ("cidr", CIDR, "10.0.0.0/8", "10.0.0.0/8"),
    ("macaddr", MACADDR, "08:00:2b:01:02:03", "08:00:2b:01:02:03"),
    ("macaddr8", MACADDR8, "08:00:2b:01:02:03:04:05", "08:00:2b:01:02:03:04:05"),
    ("money", MONEY, "$1,000.00", "$1,000.00"),
    # bytea -> base64
    ("bytea", BYTEA, "\\x00ff10", "AP8Q"),
    ("bytea empty", BYTEA, "\\x", ""),
]

NULLABLE_OIDS = sorted({oid for _name, oid, _text, _expected in ENCODING_TABLE})


def _parse_exact(raw: bytes) -> Any:
    """Parse JSON keeping every digit: fractions as Decimal, integers arbitrary precision."""
    return json.loads(raw, parse_float=Decimal)


def _same(actual: Any, expected: Any) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1."""
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _same(actual[k], expected[k]) for k in expected
        )
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(
            _same(a, e) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(expected, Decimal):
        return actual == expected
    return actual == expected


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [pytest.param(oid, text, expected, id=name) for name, oid, text, expected in ENCODING_TABLE],
)
def test_encoding_table_row(oid: int, text: str, expected: Any) -> None:
    raw = encode_row(["value"], [cast(oid, text)])
    assert b"\n" not in raw and b"\r" not in raw, "one row must stay one NDJSON line"
    parsed = _parse_exact(raw)
    assert list(parsed) == ["value"]
    assert _same(parsed["value"], expected), (raw, expected)


@pytest.mark.parametrize("oid", NULLABLE_OIDS)
def test_null_is_json_null_for_every_type(oid: int) -> None:
    assert encode_row(["value"], [cast(oid, None)]) == b'{"value":null}'


@pytest.mark.parametrize(
    ("oid", "text", "digits"),
    [
        (JSONB, '{"n": 12345678901234567890123456789}', b"12345678901234567890123456789"),
        (JSON, '{"n": 1.000000000000000000001}', b"1.000000000000000000001"),
        (JSON, "[2.50, 1E+2]", b"2.50, 1E+2"),
        (NUMERIC, BIG_NUMERIC, BIG_NUMERIC.encode()),
        (INT8, "9223372036854775807", b"9223372036854775807"),
    ],
)
def test_numbers_keep_every_digit_in_the_raw_bytes(oid: int, text: str, digits: bytes) -> None:
    assert digits in encode_row(["v"], [cast(oid, text)])


def test_json_newlines_are_flattened_but_string_escapes_survive() -> None:
    text = '{\r\n  "a": [\n    1,\n    2\n  ],\n  "s": "line1\\nline2"\n}'
    raw = dumps([{"j": cast(JSON, text)}, {"j": cast(JSONB, '{"x": 1}')}])
    assert b"\n" not in raw and b"\r" not in raw
    assert _parse_exact(raw) == [{"j": {"a": [1, 2], "s": "line1\nline2"}}, {"j": {"x": 1}}]


def test_encode_row_keeps_column_order() -> None:
    names = ["z", "a", "m"]
    raw = encode_row(names, [cast(INT4, "1"), cast(TEXT, "two"), None])
    assert raw == b'{"z":1,"a":"two","m":null}'


def test_a_whole_row_of_every_type_is_one_json_line() -> None:
    names = [f"c{i}" for i in range(len(ENCODING_TABLE))]
    values = [cast(oid, text) for _name, oid, text, _expected in ENCODING_TABLE]
    raw = encode_row(names, values)
    assert b"\n" not in raw
    parsed = _parse_exact(raw)
    for name, (_, _, _, expected) in zip(names, ENCODING_TABLE, strict=True):
        assert _same(parsed[name], expected)


# Types the driver converts by itself (psycopg2.extras registers range casters globally
# when imported, and app.validation imports it). "No type ever makes the server answer
# 500": encoding such a value must not raise.
RANGE_TYPES = [
    ("int4range", 3904, "[1,5)"),
    ("int8range", 3926, "[1,9223372036854775807)"),
    ("numrange", 3906, "[1.5,2.5]"),
    ("daterange", 3912, "[2024-01-01,2024-02-01)"),
    ("tsrange", 3908, '["2024-01-01 00:00:00","2024-01-02 00:00:00")'),
    ("tstzrange", 3910, '["2024-01-01 00:00:00+00",infinity)'),
    ("empty range", 3904, "empty"),
]


@pytest.mark.parametrize(
    ("oid", "text"), [pytest.param(oid, text, id=name) for name, oid, text in RANGE_TYPES]
)
def test_range_types_encode_without_error(oid: int, text: str) -> None:
    raw = encode_row(["r"], [cast(oid, text)])
    assert "r" in _parse_exact(raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", "2024-01-02"),
        ("12345-01-02", "12345-01-02"),
        ("0001-01-01 00:00:00 BC", "0000-01-01T00:00:00"),
        ("0002-01-01 BC", "-0001-01-01"),
        ("2024-01-02 03:04:05+05:30:15", "2024-01-02T03:04:05+05:30:15"),
        ("infinity", "infinity"),
    ],
)
def test_iso_datetime(text: str, expected: str) -> None:
    assert iso_datetime(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:02:03", "01:02:03"),
        ("01:02:03+01", "01:02:03+01:00"),
        ("01:02:03.5-09:30", "01:02:03.5-09:30"),
    ],
)
def test_iso_time(text: str, expected: str) -> None:
    assert iso_time(text) == expected


@pytest.mark.parametrize(
    "names",
    [["a", "a"], ["id", "name", "id"], ["x", "y", "z", "y"]],
)
def test_check_unique_columns_refuses_duplicates(names: list[str]) -> None:
    with pytest.raises(DuplicateColumnError) as caught:
        check_unique_columns(names)
    duplicate = next(n for i, n in enumerate(names) if n in names[:i])
    assert repr(duplicate) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("names", [[], ["a"], ["a", "A", "b"], ["?column?", "a"]])
def test_check_unique_columns_accepts_distinct_names(names: list[str]) -> None:
    assert check_unique_columns(names) is None


def test_whole_result_and_ndjson_encoders_agree_with_encode_row() -> None:
    from app.encode import encode_lines, encode_rows

    names = ["id", "n", "doc"]
    rows = [(1, "1.50", None), (2, "NaN", [1, "x"])]
    singles = [encode_row(names, row) for row in rows]
    assert encode_rows(names, rows) == b"[" + b",".join(singles) + b"]"
    assert encode_lines(names, rows) == b"".join(line + b"\n" for line in singles)
    assert encode_rows(names, []) == b"[]"
