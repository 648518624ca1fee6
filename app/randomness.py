"""The OS's random bytes, read a page at a time.

Every request takes some: its X-Request-ID, the names of its cursors, the seed of its
session reset. Read one value at a time (`secrets`), each was a getrandom syscall, three a
request. Here the bytes come from one `os.urandom` read of READ_BYTES, handed out in order
and never twice: `BytesIO.read` runs whole under the GIL, so two threads get different
bytes without a lock, and a forked child never hands out what its parent read (each would
hand out the same).
"""

from __future__ import annotations

import io
import os

READ_BYTES = 4096
_stream = io.BytesIO()


def _forget() -> None:
    global _stream
    _stream = io.BytesIO()


os.register_at_fork(after_in_child=_forget)  # gunicorn forks its workers


def token_bytes(count: int) -> bytes:
    """`count` random bytes (at most READ_BYTES), as `secrets.token_bytes` gives them."""
    global _stream
    if count > READ_BYTES:
        raise ValueError(f"at most {READ_BYTES} random bytes at a time, not {count}")
    chunk = _stream.read(count)
    while len(chunk) < count:  # used up: the rest of it is dropped
        _stream = io.BytesIO(os.urandom(READ_BYTES))
        chunk = _stream.read(count)
    return chunk


def token_hex(count: int) -> str:
    """`count` random bytes as hex digits, as `secrets.token_hex` gives them."""
    return token_bytes(count).hex()


def randbits(bits: int) -> int:
    """A random integer of `bits` bits, as `secrets.randbits` gives it."""
    size = (bits + 7) // 8
    return int.from_bytes(token_bytes(size)) >> (size * 8 - bits)
