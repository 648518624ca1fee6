"""Bearer-token authentication: which token, and so which login and limits a request has."""

from __future__ import annotations

import hmac

from app.errors import ApiError
from app.settings import Settings, Token


def token_for_request(settings: Settings, authorization: str | None) -> Token | None:
    """The request's token (None when no tokens are configured), or a 401.

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
    matched: Token | None = None
    for secret, token in settings.api_tokens.items():
        if hmac.compare_digest(secret.encode(), presented_bytes):
            matched = token
    if matched is None:
        raise ApiError(
            401,
            "invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return matched
