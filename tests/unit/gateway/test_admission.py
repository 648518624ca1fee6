"""A token's share of a worker: its concurrency, and a client's part of it (pure logic)."""

from __future__ import annotations

import pytest

from app.admission import Admission
from app.errors import ApiError
from app.settings import Token

TOKEN = Token("reports", "reader", concurrency=3, per_client=2)


def _refused(admission: Admission, client: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        admission.admit(TOKEN, client)
    assert caught.value.status == 429 and caught.value.headers["Retry-After"]
    return caught.value


def test_one_client_gets_its_part_and_another_the_rest() -> None:
    admission = Admission()
    first = [admission.admit(TOKEN, "10.0.0.1") for _ in range(2)]
    assert "from one client" in _refused(admission, "10.0.0.1").message
    other = admission.admit(TOKEN, "10.0.0.2")
    assert "its 3 requests" in _refused(admission, "10.0.0.3").message
    for release in [*first, other]:
        release()
    releases = [admission.admit(TOKEN, "10.0.0.1") for _ in range(2)]
    assert len(releases) == 2  # everything given back was taken again


def test_a_share_given_back_can_be_taken_again() -> None:
    admission = Admission()
    release = admission.admit(TOKEN, "a")
    release()
    for _ in range(2):
        admission.admit(TOKEN, "a")
    _refused(admission, "a")


def test_without_tokens_there_is_no_limit() -> None:
    admission = Admission()
    for _ in range(1000):
        admission.admit(None, "a")
