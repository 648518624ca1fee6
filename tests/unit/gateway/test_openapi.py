"""The OpenAPI document stays true to the routes the app really serves."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.errors import ApiError
from app.lifecycle import Lifecycle
from app.openapi import openapi_document
from app.operations import create_ops_app
from app.responses import error_document
from app.settings import Settings
from app.validation import QUERY_FIELDS, STATEMENT_FIELDS, TRANSACTION_FIELDS

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _routes(client: FlaskClient) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        routes.setdefault(rule.rule, set()).update(methods)
    return routes


def test_every_route_is_documented_with_its_methods(client: FlaskClient) -> None:
    data = _routes(client)
    ops = _routes(create_ops_app(Settings(), Lifecycle(), lambda: 1).test_client())
    paths = openapi_document()["paths"]
    assert data and ops, "both apps register routes"
    assert set(data) | set(ops) == set(paths)
    for path, methods in {**data, **ops}.items():
        assert set(paths[path]) & HTTP_METHODS == methods, path
    for path in ops:  # documented on the server that answers them
        assert paths[path]["servers"][0]["variables"]["ops_port"]["default"] == str(
            Settings().ops_port
        )
    assert all("servers" not in paths[path] for path in data)


def test_openapi_version_and_info() -> None:
    document = openapi_document()
    assert isinstance(document["openapi"], str) and document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]


def test_every_operation_has_responses_with_descriptions() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "servers":  # a path-level field, not an operation
                continue
            assert method in HTTP_METHODS, (path, method)
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                assert status == "default" or 100 <= int(status) <= 599
                assert response["description"], (path, method, status)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_resolves() -> None:
    document = openapi_document()
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert isinstance(_resolve(document, ref), dict), ref


def test_valid_against_the_openapi_3_0_meta_schema() -> None:
    # schemathesis (a test dependency) ships the official OpenAPI 3.0 schema.
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_30

    validator = jsonschema_rs.Draft4Validator(OPENAPI_30)
    errors = [error.message for error in validator.iter_errors(openapi_document())]
    assert errors == []
    assert not validator.is_valid({"openapi": "3.0.3", "paths": {}}), "the validator validates"


def test_error_schema_matches_the_error_body() -> None:
    error_schema = openapi_document()["components"]["schemas"]["Error"]["properties"]["error"]
    body = error_document(ApiError(400, "x").at_statement(0))["error"]
    assert set(error_schema["required"]) == set(error_document(ApiError(400, "x"))["error"])
    assert set(error_schema["properties"]) == set(body)


@pytest.mark.parametrize("path", ["/query", "/transaction"])
def test_sql_endpoints_document_their_error_statuses(path: str) -> None:
    responses = openapi_document()["paths"][path]["post"]["responses"]
    for status in ("200", "400", "401", "403", "408", "409", "413", "415", "503", "504"):
        assert status in responses, (path, status)


def test_served_document_is_the_document(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == openapi_document()


@pytest.mark.parametrize(
    ("where", "accepted"),
    [
        (("QueryRequest",), QUERY_FIELDS),
        (("TransactionRequest",), TRANSACTION_FIELDS),
        (("TransactionRequest", "statements"), STATEMENT_FIELDS),
    ],
)
def test_request_fields_are_the_ones_validation_accepts(where: tuple[str, ...], accepted) -> None:
    """app/validation.py decides what a body may hold; the document must say the same."""
    schema = openapi_document()["components"]["schemas"][where[0]]
    for field in where[1:]:
        schema = schema["properties"][field]["items"]
    assert set(schema["properties"]) == accepted
    assert schema["additionalProperties"] is False
