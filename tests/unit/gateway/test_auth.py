"""Bearer tokens, and the token (so the role and limits) each one is."""

from __future__ import annotations

import pytest

from app.auth import token_for_request
from app.errors import ApiError
from app.settings import Settings, Token

TOKENS = Settings(
    api_tokens={
        secret: Token(f"token-{n}", role, 5, 5)
        for n, (secret, role) in enumerate(
            [("s3cret", None), ("reader-token", "reader"), ("writer", "app_rw")], start=1
        )
    }
)


@pytest.mark.parametrize("authorization", [None, "", "Bearer x", "garbage"])
def test_no_tokens_configured_means_no_authentication(authorization: str | None) -> None:
    assert token_for_request(Settings(), authorization) is None


@pytest.mark.parametrize(
    ("authorization", "role"),
    [
        ("Bearer s3cret", None),
        ("bearer s3cret", None),
        ("BEARER s3cret ", None),
        ("Bearer reader-token", "reader"),
        ("Bearer writer", "app_rw"),
    ],
)
def test_known_token_gives_its_role(authorization: str, role: str | None) -> None:
    token = token_for_request(TOKENS, authorization)
    assert token is not None and token.role == role


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic czNjcmV0",
        "Token s3cret",
        "s3cret",
        "Bearer wrong",
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer reader",
        "Bearer S3CRET",
    ],
)
def test_missing_or_wrong_token_is_401(authorization: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        token_for_request(TOKENS, authorization)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert "s3cret" not in caught.value.message
