"""The gateway's HTTP API as the gate's checks call it, from outside the cluster.

One place for how a client authenticates (`Authorization: Bearer`), so the e2e checks on
kind and the smoke checks of a real deployment send the same requests.
"""

from __future__ import annotations

from typing import Any

import requests

REQUEST_TIMEOUT_S = 30


def post_query(base_url: str, sql: str, token: str | None, **fields: Any) -> requests.Response:
    """POST /query; `token` None sends no Authorization header at all."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{base_url}/query",
        json={"query": sql, **fields},
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
    )
