"""The OpenAPI 3 description of every endpoint (a test keeps it in step with the routes of
the data app and of the operations app, whose paths name their own server: OPS_PORT)."""

from __future__ import annotations

from functools import cache
from typing import Any

_OPTIONS = {
    "timeout_ms": {"type": "integer", "minimum": 1, "description": "statement timeout, capped"},
    "max_rows": {"type": "integer", "minimum": 1, "description": "row cap, capped by MAX_ROWS"},
    "meta": {"type": "boolean", "default": False, "description": "add columns, rowcount..."},
}
_PARAMS = {
    "description": "array for %s placeholders, object for %(name)s placeholders",
    "oneOf": [{"type": "array"}, {"type": "object"}],
}
_STATEMENT = {
    "type": "object",
    "required": ["query"],
    "additionalProperties": False,
    "properties": {"query": {"type": "string", "minLength": 1}, "params": _PARAMS},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "error") for status in statuses}


_SQL_ERRORS = (400, 401, 403, 408, 409, 413, 415, 429, 503, 504)
_SECURITY = [{"bearer": []}]
# The operations endpoints answer on a listener of their own, not in the Service.
_OPS_SERVER = [
    {
        "url": "http://{host}:{ops_port}",
        "description": "the operations listener (OPS_PORT), for probes and Prometheus only",
        "variables": {"host": {"default": "localhost"}, "ops_port": {"default": "5001"}},
    }
]


@cache
def openapi_document() -> dict[str, Any]:
    status_schema = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pg-gateway",
            "version": "0.1.0",
            "description": "Run SQL against PostgreSQL over HTTP and get JSON back.",
        },
        "paths": {
            "/query": {
                "post": {
                    "summary": "Run one SQL text (several ;-separated statements: one transaction)",
                    "security": _SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("QueryRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "the result of the (last) statement",
                            "content": {
                                "application/json": {"schema": _ref("Result")},
                                "application/x-ndjson": {
                                    "schema": {"type": "string"},
                                },
                            },
                        },
                        **_errors(*_SQL_ERRORS),
                    },
                }
            },
            "/transaction": {
                "post": {
                    "summary": "Run statements in one transaction, all or nothing",
                    "security": _SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TransactionRequest")}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "results": {"type": "array", "items": _ref("Result")}
                                },
                            },
                            "one result per statement",
                        ),
                        **_errors(*_SQL_ERRORS),
                    },
                }
            },
            "/healthz": {
                "servers": _OPS_SERVER,
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _json(status_schema, "alive")},
                },
            },
            "/readyz": {
                "servers": _OPS_SERVER,
                "get": {
                    "summary": "Readiness: not draining, a live worker, SELECT 1 within 1 s",
                    "responses": {
                        "200": _json(status_schema, "ready"),
                        "503": _json(status_schema, "not ready"),
                    },
                },
            },
            "/metrics": {
                "servers": _OPS_SERVER,
                "get": {
                    "summary": "Prometheus metrics of all workers",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "QueryRequest": {
                    **_STATEMENT,
                    "properties": {**_STATEMENT["properties"], **_OPTIONS},
                },
                "TransactionRequest": {
                    "type": "object",
                    "required": ["statements"],
                    "additionalProperties": False,
                    "properties": {
                        "statements": {"type": "array", "minItems": 1, "items": _STATEMENT},
                        "read_only": {"type": "boolean", "default": False},
                        **_OPTIONS,
                    },
                },
                "Result": {
                    "type": "object",
                    "required": ["result"],
                    "properties": {
                        "result": {
                            "oneOf": [
                                {"type": "string", "enum": ["OK"]},
                                {"type": "array", "items": {"type": "object"}},
                            ]
                        },
                        "columns": {"type": "array", "items": {"type": "object"}},
                        "rowcount": {"type": "integer"},
                        "command": {"type": "string"},
                        "truncated": {"type": "boolean"},
                        "duration_ms": {"type": "number"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "sqlstate", "detail", "hint", "position"],
                            "properties": {
                                "message": {"type": "string"},
                                "sqlstate": {"type": "string", "nullable": True},
                                "detail": {"type": "string", "nullable": True},
                                "hint": {"type": "string", "nullable": True},
                                "position": {"type": "integer", "nullable": True},
                                "statement": {"type": "integer"},
                            },
                        }
                    },
                },
            },
        },
    }
