"""Request bodies -> typed requests; every malformed body is a 400 naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from psycopg2.extras import Json

from app.errors import ApiError
from app.settings import Settings
from app.validation import MAX_STATEMENTS, parse_json_body, parse_query, parse_transaction

SETTINGS = Settings(
    statement_timeout_ms=5000, max_statement_timeout_ms=60000, max_rows=10000, read_only=False
)


def _raises_400(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    assert caught.value.status == 400
    assert caught.value.message
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"{}}",
        b"[1,]",
        b"{'a': 1}",
        b"\xff",
        b"NaN",
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": NaN}',
    ],
)
def test_parse_json_body_malformed(raw: bytes) -> None:
    assert "malformed JSON" in _raises_400(parse_json_body, raw).message


@pytest.mark.parametrize("raw", [b"[]", b'"select 1"', b"1", b"null", b"true", b'[{"query": "x"}]'])
def test_parse_json_body_not_an_object(raw: bytes) -> None:
    assert "object" in _raises_400(parse_json_body, raw).message


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]
)
def test_a_body_in_any_json_encoding_is_read(encoding: str) -> None:
    text = '{"query": "select \'\u00e9\u4e2d\U0001f600\'"}'
    assert parse_json_body(text.encode(encoding)) == {"query": "select '\u00e9\u4e2d\U0001f600'"}


def test_parse_json_body_deep_nesting_is_400() -> None:
    _raises_400(parse_json_body, b"[" * 100_000)


def test_fractional_numbers_become_exact_decimals() -> None:
    body = parse_json_body(b'{"a": 0.1, "b": 12345678901234567890.123456789, "c": 1e400, "d": 7}')
    assert body["a"] == Decimal("0.1") and type(body["a"]) is Decimal
    assert body["b"] == Decimal("12345678901234567890.123456789")
    assert body["c"] == Decimal("1e400")
    assert body["d"] == 7 and type(body["d"]) is int


# (body, word the message must contain)
BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({}, "'query'"),
    ({"query": None}, "'query'"),
    ({"query": ""}, "'query'"),
    ({"query": "   \n\t"}, "'query'"),
    ({"query": 1}, "'query'"),
    ({"query": ["select 1"]}, "'query'"),
    ({"query": {"sql": "select 1"}}, "'query'"),
    ({"query": "select 1", "params": "a"}, "'params'"),
    ({"query": "select 1", "params": 1}, "'params'"),
    ({"query": "select 1", "params": True}, "'params'"),
    ({"query": "select 1", "timeout_ms": 0}, "'timeout_ms'"),
    ({"query": "select 1", "timeout_ms": -1}, "'timeout_ms'"),
    ({"query": "select 1", "timeout_ms": True}, "'timeout_ms'"),
    ({"query": "select 1", "timeout_ms": "100"}, "'timeout_ms'"),
    ({"query": "select 1", "timeout_ms": Decimal("1.5")}, "'timeout_ms'"),
    ({"query": "select 1", "timeout_ms": [100]}, "'timeout_ms'"),
    ({"query": "select 1", "max_rows": 0}, "'max_rows'"),
    ({"query": "select 1", "max_rows": -10}, "'max_rows'"),
    ({"query": "select 1", "max_rows": False}, "'max_rows'"),
    ({"query": "select 1", "max_rows": "10"}, "'max_rows'"),
    ({"query": "select 1", "meta": "true"}, "'meta'"),
    ({"query": "select 1", "meta": 1}, "'meta'"),
    ({"query": "select 1", "meta": None}, "'meta'"),
    ({"query": "select 1", "sql": "x"}, "'sql'"),
    ({"query": "select 1", "read_only": True}, "'read_only'"),
    ({"query": "select 1", "statements": []}, "'statements'"),
]


@pytest.mark.parametrize(("body", "field"), BAD_QUERIES)
def test_parse_query_rejects(body: dict[str, Any], field: str) -> None:
    assert field in _raises_400(parse_query, body, SETTINGS).message


def _tx(**fields: Any) -> dict[str, Any]:
    return {"statements": [{"query": "select 1"}], **fields}


BAD_TRANSACTIONS: list[tuple[dict[str, Any], str]] = [
    ({}, "'statements'"),
    ({"statements": None}, "'statements'"),
    ({"statements": []}, "'statements'"),
    ({"statements": {"query": "select 1"}}, "'statements'"),
    ({"statements": "select 1"}, "'statements'"),
    ({"statements": ["select 1"]}, "statements[0]"),
    ({"statements": [{"query": "select 1"}, 5]}, "statements[1]"),
    ({"statements": [{"query": "select 1"}, None]}, "statements[1]"),
    ({"statements": [{"query": "select 1"}, {}]}, "statements[1]"),
    ({"statements": [{"query": ""}]}, "statements[0]"),
    ({"statements": [{"query": "select 1", "params": "x"}]}, "statements[0]"),
    ({"statements": [{"query": "select 1", "timeout_ms": 5}]}, "'timeout_ms' in statements[0]"),
    ({"statements": [{"query": "select 1", "foo": 1}]}, "'foo' in statements[0]"),
    ({"statements": [{"query": "select 1"}] * (MAX_STATEMENTS + 1)}, "'statements'"),
    (_tx(read_only="yes"), "'read_only'"),
    (_tx(read_only=None), "'read_only'"),
    (_tx(timeout_ms=0), "'timeout_ms'"),
    (_tx(max_rows=True), "'max_rows'"),
    (_tx(meta=0), "'meta'"),
    (_tx(query="select 1"), "'query'"),
    (_tx(extra=1), "'extra'"),
]


@pytest.mark.parametrize(("body", "field"), BAD_TRANSACTIONS)
def test_parse_transaction_rejects(body: dict[str, Any], field: str) -> None:
    assert field in _raises_400(parse_transaction, body, SETTINGS).message


def test_transaction_of_exactly_max_statements_is_fine() -> None:
    parsed = parse_transaction({"statements": [{"query": "select 1"}] * MAX_STATEMENTS}, SETTINGS)
    assert len(parsed.statements) == MAX_STATEMENTS


def test_query_defaults_come_from_settings() -> None:
    parsed = parse_query({"query": "select 1"}, SETTINGS)
    assert parsed.statement.query == "select 1"
    assert parsed.statement.params is None
    options = parsed.options
    assert (options.timeout_ms, options.max_rows, options.meta, options.read_only) == (
        5000,
        10000,
        False,
        False,
    )


@pytest.mark.parametrize(
    ("field", "requested", "expected"),
    [
        ("timeout_ms", 1, 1),
        ("timeout_ms", 60000, 60000),
        ("timeout_ms", 60001, 60000),
        ("timeout_ms", 10**30, 60000),
        ("max_rows", 1, 1),
        ("max_rows", 10000, 10000),
        ("max_rows", 10001, 10000),
        ("max_rows", 10**30, 10000),
    ],
)
def test_limits_are_capped_by_the_server_maximums(
    field: str, requested: int, expected: int
) -> None:
    for parse, body in (
        (parse_query, {"query": "select 1", field: requested}),
        (parse_transaction, _tx(**{field: requested})),
    ):
        assert getattr(parse(body, SETTINGS).options, field) == expected


def test_meta_and_read_only_flags() -> None:
    assert parse_query({"query": "select 1", "meta": True}, SETTINGS).options.meta is True
    assert parse_transaction(_tx(read_only=True), SETTINGS).options.read_only is True
    assert parse_transaction(_tx(read_only=False), SETTINGS).options.read_only is False
    server_read_only = Settings(read_only=True)
    assert parse_transaction(_tx(read_only=False), server_read_only).options.read_only is True
    assert parse_query({"query": "select 1"}, server_read_only).options.read_only is True


def test_a_read_only_roles_requests_are_read_only_whatever_they_ask() -> None:
    settings = Settings(read_only_roles=frozenset({"reader"}))
    assert parse_query({"query": "select 1"}, settings, "reader").options.read_only is True
    assert parse_query({"query": "select 1"}, settings, "other").options.read_only is False
    asked_to_write = parse_transaction(_tx(read_only=False), settings, "reader")
    assert asked_to_write.options.read_only is True


@pytest.mark.parametrize(
    "body",
    [
        {"query": "select '\ud800'"},
        {"query": "select %s", "params": ["\udfff"]},
        {"query": "select %s", "params": [{"\ud800": 1}]},
        {"query": "select %(k)s", "params": {"\ud800": 1}},
    ],
)
def test_a_lone_surrogate_is_400_not_text(body: dict[str, Any]) -> None:
    assert "surrogate" in _raises_400(parse_query, body, SETTINGS).message


def test_positional_params_keep_exact_values_and_wrap_objects_as_json() -> None:
    raw = (
        b'{"query": "select %s, %s, %s, %s, %s, %s",'
        b' "params": [0.1, "x", null, true, {"a": [1, {"b": 2}]}, [1, {"c": 3}]]}'
    )
    body = parse_json_body(raw)
    params = parse_query(body, SETTINGS).statement.params
    assert isinstance(params, list)
    assert params[0] == Decimal("0.1") and type(params[0]) is Decimal
    assert params[1:4] == ["x", None, True]
    assert isinstance(params[4], Json) and params[4].adapted == {"a": [1, {"b": 2}]}
    assert params[5][0] == 1
    assert isinstance(params[5][1], Json) and params[5][1].adapted == {"c": 3}


def test_named_params_and_injection_text_stays_data() -> None:
    evil = "'); drop table account; --"
    params = parse_query(
        {"query": "select %(name)s, %(doc)s", "params": {"name": evil, "doc": {"k": "v"}}},
        SETTINGS,
    ).statement.params
    assert isinstance(params, dict)
    assert params["name"] == evil
    assert isinstance(params["doc"], Json) and params["doc"].adapted == {"k": "v"}


def test_transaction_statements_keep_order_and_params() -> None:
    parsed = parse_transaction(
        {
            "statements": [
                {"query": "insert into t values (%s)", "params": [1]},
                {"query": "select %(x)s", "params": {"x": 2}},
                {"query": "select 3"},
            ]
        },
        SETTINGS,
    )
    assert [s.query for s in parsed.statements] == [
        "insert into t values (%s)",
        "select %(x)s",
        "select 3",
    ]
    assert [s.params for s in parsed.statements] == [[1], {"x": 2}, None]


def test_deeply_nested_params_are_400_or_accepted_never_a_crash() -> None:
    nested = "[" * 600 + "]" * 600
    body = parse_json_body(('{"query": "select %s", "params": [' + nested + "]}").encode())
    try:
        parse_query(body, SETTINGS)
    except ApiError as error:
        assert error.status == 400
