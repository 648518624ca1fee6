"""Arrays and vectors as JSON: any bounds, any element type, NULLs, quoting, delimiters."""

from __future__ import annotations

import pytest

from app.typecast import TypeCatalog, parse_array, vector, without_bounds
from tests.unit.gateway.conftest import cast

INT4_ARRAY, TEXT_ARRAY, NUMERIC_ARRAY, INT2VECTOR, INT2VECTOR_ARRAY = 1007, 1009, 1231, 22, 1006


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [
        (INT4_ARRAY, "[2:3][2:3]={{1,2},{3,4}}", [[1, 2], [3, 4]]),
        (INT4_ARRAY, "[0:1]={5,NULL}", [5, None]),
        (TEXT_ARRAY, '[-2:-1]={a,"b,c"}', ["a", "b,c"]),
        (NUMERIC_ARRAY, "[5:5]={1.50}", ["1.50"]),
        (INT2VECTOR, "1 2 3", [1, 2, 3]),
        (INT2VECTOR_ARRAY, '{"1 2","3"}', [[1, 2], [3]]),
        (INT2VECTOR_ARRAY, '[2:2]={"7 8"}', [[7, 8]]),
        (2287, '{"(1,\\"x y\\")","(2,)"}', ['(1,"x y")', "(2,)"]),  # record[]
        (1561, "{101,01}", ["101", "01"]),  # bit[]
        (6150, '{"{[1,3)}"}', ["{[1,3)}"]),  # int4multirange[]
    ],
)
def test_arrays_the_driver_could_not_read(oid: int, text: str, expected: object) -> None:
    assert cast(oid, text) == expected


@pytest.mark.parametrize(
    ("text", "delimiter", "expected"),
    [
        ("{}", ",", []),
        ('{a,NULL,"NULL",""}', ",", ["a", None, "NULL", ""]),
        ('{"a\\\\b","c\\"d"}', ",", ["a\\b", 'c"d']),
        ("{{a,b},{c,d}}", ",", [["a", "b"], ["c", "d"]]),
        ("{(1,1),(0,0);(3,3),(2,2)}", ";", ["(1,1),(0,0)", "(3,3),(2,2)"]),  # box[]
        ("[1:2]={ x , y }", ",", ["x", "y"]),
    ],
)
def test_parse_array(text: str, delimiter: str, expected: object) -> None:
    assert parse_array(text, str, delimiter) == expected


def test_elements_follow_their_type() -> None:
    assert parse_array("{1,2,NULL}", int) == [1, 2, None]
    assert vector("") == []
    assert without_bounds("{1}") == "{1}"


def test_the_catalog_learns_arrays_of_unknown_types_once() -> None:
    catalog = TypeCatalog()
    enum_array, domain_array, enum_oid = 90001, 90002, 90000
    assert catalog.missing([23, enum_array, domain_array, enum_oid]) == [90000, 90001, 90002]
    # TYPE_QUERY answers (oid, delimiter, element's base type) for arrays only.
    catalog.learn(
        [enum_oid, enum_array, domain_array], [(enum_array, ",", enum_oid), (domain_array, ",", 23)]
    )
    assert catalog.missing([enum_array, domain_array, enum_oid]) == []
    converters = catalog.converters([enum_oid, enum_array, domain_array])
    assert set(converters) == {1, 2}  # an enum itself stays text
    assert converters[1]("{a,b}") == ["a", "b"]
    assert converters[2]("{5,NULL}") == [5, None]
