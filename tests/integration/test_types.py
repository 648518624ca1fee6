"""A table with a column of every type in the encoding table round-trips to the documented JSON."""

from __future__ import annotations

import base64

import pytest

# (column type, SQL literal stored, JSON value expected back)
TYPES = [
    ("smallint", "-32768", -32768),
    ("integer", "2147483647", 2147483647),
    ("bigint", "9223372036854775807", 9223372036854775807),
    ("real", "1.5", 1.5),
    ("double precision", "0.1", 0.1),
    ("double precision", "'NaN'", "NaN"),
    ("double precision", "'Infinity'", "Infinity"),
    ("double precision", "'-Infinity'", "-Infinity"),
    (
        "numeric",
        "123456789012345678901234567890.000000000000000000001",
        "123456789012345678901234567890.000000000000000000001",
    ),
    ("numeric(10,2)", "1.5", "1.50"),
    ("boolean", "true", True),
    ("text", "'héllo \"world\"'", 'héllo "world"'),
    ("varchar(10)", "'abc'", "abc"),
    ("char(3)", "'ab'", "ab "),
    (
        "json",
        """'{"a": [1, 2.50000000000000000001], "b": null}'""",
        {"a": [1, 2.50000000000000000001], "b": None},
    ),
    ("jsonb", """'{"nested": {"x": true}}'""", {"nested": {"x": True}}),
    ("integer[]", "'{1,NULL,3}'", [1, None, 3]),
    ("text[]", """'{"a,b",c}'""", ["a,b", "c"]),
    ("numeric[]", "'{1.10,2}'", ["1.10", "2"]),
    ("integer[][]", "'{{1,2},{3,4}}'", [[1, 2], [3, 4]]),
    ("date", "'2024-02-29'", "2024-02-29"),
    ("date", "'0044-03-15 BC'", "-0043-03-15"),
    ("time", "'13:14:15.5'", "13:14:15.5"),
    ("timetz", "'13:14:15+05:30'", "13:14:15+05:30"),
    ("timestamp", "'2024-01-02 03:04:05.123456'", "2024-01-02T03:04:05.123456"),
    ("timestamp", "'infinity'", "infinity"),
    ("timestamptz", "'2024-01-02 03:04:05+02'", "2024-01-02T01:04:05+00:00"),
    ("timestamptz[]", "'{\"2024-01-02 03:04:05+00\"}'", ["2024-01-02T03:04:05+00:00"]),
    ("interval", "'1 year 2 months 3 days 04:05:06.5'", "P1Y2M3DT4H5M6.5S"),
    ("interval", "'-1 day'", "P-1D"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (
        "uuid[]",
        "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    ),
    ("inet", "'192.168.0.1/24'", "192.168.0.1/24"),
    ("cidr", "'10.0.0.0/8'", "10.0.0.0/8"),
    ("macaddr", "'08:00:2b:01:02:03'", "08:00:2b:01:02:03"),
    ("bytea", "'\\x00ff10'::bytea", base64.b64encode(b"\x00\xff\x10").decode()),
    ("bytea[]", "array['\\x01'::bytea]", [base64.b64encode(b"\x01").decode()]),
    ("integer", "NULL", None),
]


@pytest.fixture
def every_type(admin) -> list[str]:
    admin.execute("DROP TABLE IF EXISTS every_type")
    columns = ", ".join(f"c{i} {sql_type}" for i, (sql_type, _, _) in enumerate(TYPES))
    admin.execute(f"CREATE TABLE every_type ({columns})")
    values = ", ".join(literal for _, literal, _ in TYPES)
    admin.execute(f"INSERT INTO every_type VALUES ({values})")
    admin.execute("ALTER TABLE every_type OWNER TO gateway")
    return [f"c{i}" for i in range(len(TYPES))]


def test_every_type_round_trips(gateway, every_type) -> None:
    response = gateway.query("select * from every_type", meta=True)
    assert response.status_code == 200, response.text
    body = response.json()
    (row,) = body["result"]
    assert list(row) == every_type  # keys in column order
    for column, (sql_type, literal, expected) in zip(every_type, TYPES, strict=True):
        assert row[column] == expected, f"{sql_type} {literal}"
    types = [column["type"] for column in body["columns"]]
    assert types[:3] == ["smallint", "integer", "bigint"]
    assert body["rowcount"] == 1
    assert body["command"] == "SELECT 1"
    assert body["truncated"] is False


def test_json_numbers_keep_every_digit(gateway) -> None:
    response = gateway.query("""select '{"n": 2.50000000000000000001}'::json as j""")
    assert b"2.50000000000000000001" in response.content


def test_duplicate_column_names_are_refused_not_dropped(gateway) -> None:
    response = gateway.query("select 1 as a, 2 as a")
    assert response.status_code == 400
    assert "two columns named 'a'" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "sql",
    [
        "select '(1,2)'::point",
        "select 'a & b'::tsquery",
        "select int4range(1, 5)",
        "select tstzrange(now(), null), array[daterange('[2024-01-01,2024-02-01)')]",
        "select '{[1,3), [5,7)}'::int4multirange",
        "select row(1, 'x')",
        "select '$.a[*]'::jsonpath, 'abc'::name, 'a'::\"char\"",
        "select 12.5::money",
        "select 'fat cats'::tsvector",
        "select '1 2'::oidvector, '{1,2}'::int2vector[]",
    ],
)
def test_other_types_never_fail(gateway, sql) -> None:
    response = gateway.query(sql)
    assert response.status_code == 200, response.text
