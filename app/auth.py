"""Bearer-token authentication: which token, and which database role it runs as."""

from __future__ import annotations

import hmac

from app.errors import ApiError
from app.settings import Settings


def role_for_request(settings: Settings, authorization: str | None) -> str | None:
    """The role to `SET ROLE` to (None: the connection's own), or a 401.

    Every configured token is compared in constant time so the answer's timing does not
    reveal how much of a guessed token was right.
    """
    if not settings.auth_required:
        return None
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="pg-gateway"'}
        )
    presented_bytes = presented.strip().encode()
    matched: str | None = None
    found = False
    for token, role in settings.api_tokens.items():
        if hmac.compare_digest(token.encode(), presented_bytes):
            matched, found = role, True
    if not found:
        raise ApiError(
            401,
            "invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return matched
