"""The OS's random bytes, read a page at a time: handed out in order, never twice, and
never the same in a forked child as in its parent."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from app import randomness


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """os.urandom as this module sees it, giving each read bytes no other read holds
    (0, 1, 2... as 2-byte numbers), and recording the reads; the module starts empty."""
    reads: list[bytes] = []
    numbers = itertools.count()

    def urandom(size: int) -> bytes:
        read = b"".join(next(numbers).to_bytes(2) for _ in range(size // 2))
        reads.append(read)
        return read

    monkeypatch.setattr(randomness.os, "urandom", urandom)
    monkeypatch.setattr(randomness, "_stream", randomness.io.BytesIO())
    yield reads


def test_bytes_come_from_one_read_in_order_and_what_is_left_is_dropped(
    counted_reads: list[bytes],
) -> None:
    size = 6  # does not divide READ_BYTES: the last take of a read needs more than is left
    takes = [randomness.token_bytes(size) for _ in range(randomness.READ_BYTES // size + 1)]
    assert [len(read) for read in counted_reads] == [randomness.READ_BYTES] * 2
    first, second = counted_reads
    whole = randomness.READ_BYTES - randomness.READ_BYTES % size
    assert b"".join(takes[:-1]) == first[:whole]
    assert takes[-1] == second[:size]
    assert len(set(takes)) == len(takes)


def test_the_forms_of_secrets(counted_reads: list[bytes]) -> None:
    assert randomness.token_hex(4) == counted_reads[0][:4].hex()
    assert randomness.randbits(52) == int.from_bytes(counted_reads[0][4:11]) >> 4
    assert all(0 <= randomness.randbits(52) < 2**52 for _ in range(1000))
    assert len(randomness.token_hex(16)) == 32


def test_more_than_one_read_at_a_time_is_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        randomness.token_bytes(randomness.READ_BYTES + 1)


def test_a_forked_child_hands_out_none_of_its_parents_bytes() -> None:
    randomness.token_bytes(1)  # the parent holds most of a read
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # a worker
        os.write(writer, randomness.token_bytes(16))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 16)
    os.close(reader)
    assert len(childs) == 16
    assert childs != randomness.token_bytes(16)
