"""Parameters are bound by the driver: data never becomes SQL."""

from __future__ import annotations

INJECTION = "'); drop table account; --"


def test_positional_parameters(gateway) -> None:
    response = gateway.query("select %s::int + %s::int as sum, %s as word", params=[2, 3, "x"])
    assert response.status_code == 200
    assert response.json() == {"result": [{"sum": 5, "word": "x"}]}


def test_named_parameters(gateway) -> None:
    response = gateway.query(
        "select %(a)s::text as a, %(b)s::numeric as b", params={"a": "hello", "b": 1.25}
    )
    assert response.json() == {"result": [{"a": "hello", "b": "1.25"}]}


def test_injection_attempt_stays_data(gateway, admin) -> None:
    admin.execute("DROP TABLE IF EXISTS people")
    admin.execute("CREATE TABLE people (name text)")
    admin.execute("ALTER TABLE people OWNER TO gateway")
    response = gateway.query("insert into people (name) values (%s)", params=[INJECTION])
    assert response.status_code == 200
    rows = gateway.query("select name from people").json()["result"]
    assert rows == [{"name": INJECTION}]
    admin.execute("SELECT to_regclass('people') IS NOT NULL")
    assert admin.fetchone() == (True,)


def test_json_object_and_array_parameters(gateway) -> None:
    response = gateway.query(
        "select %s::jsonb as doc, %s::int[] as numbers",
        params=[{"k": [1, {"n": None}]}, [1, 2, 3]],
    )
    assert response.json() == {"result": [{"doc": {"k": [1, {"n": None}]}, "numbers": [1, 2, 3]}]}


def test_exact_decimal_parameter_is_not_rounded(gateway) -> None:
    # Sent as raw JSON: the gateway parses numbers as Decimal, so no float rounding.
    body = '{"query": "select %s::numeric as n", "params": [0.1000000000000000000001]}'
    response = gateway.session.post(
        gateway.url + "/query", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.json() == {"result": [{"n": "0.1000000000000000000001"}]}


def test_mismatched_parameters_are_a_400(gateway) -> None:
    too_few = gateway.query("select %s, %s", params=[1])
    missing_name = gateway.query("select %(a)s", params={"b": 1})
    for response in (too_few, missing_name):
        assert response.status_code == 400
        assert "parameters" in response.json()["error"]["message"]


def test_percent_sign_without_params_is_literal(gateway) -> None:
    response = gateway.query("select 'a%b' as t")
    assert response.json() == {"result": [{"t": "a%b"}]}
