"""What psycopg2 does not expose of the libpq it is linked with, through ctypes.

Two things the gateway's limits need and psycopg2 cannot give:
- a cancel request that never blocks: psycopg2's `cancel()` is libpq's blocking `PQcancel`,
  which waits for the server's answer and so froze a whole gevent worker while PostgreSQL
  was stalled. libpq 17's non-blocking cancel (`PQcancelCreate`, `PQcancelStart`,
  `PQcancelPoll`) is driven here like any other socket wait, with its own deadline;
- how much a connection holds while a result arrives: libpq reads a result whole before
  psycopg2 sees a row, and it enlarges its input buffer to a message's announced length as
  soon as the message's header arrives (one 500 MB value: 512 MiB at once). The size of that
  buffer (`inBufSize`) and of the result under construction (`PQresultMemorySize` of
  `result`) are read after each poll, so the gateway gives up on a result before holding it.
  libpq has no accessor for the two fields: their offsets in `PGconn` are found once per
  process on a fresh connection, from the layout libpq 15-17 share (`be_pid`, then the input
  and output buffers, then `rowBuf` and `result`), and checked against the values a fresh
  connection must hold there; a libpq that does not match stops the gateway at its first
  connection rather than run without the bound.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2._psycopg
import psycopg2.extensions as ext

_lib = ctypes.CDLL(psycopg2._psycopg.__file__)  # its symbols include the libpq it links


def _function(name: str, restype: object, *argtypes: object) -> Callable:
    try:
        function = getattr(_lib, name)
    except AttributeError:
        raise ImportError(
            f"psycopg2's libpq has no {name} (libpq 17 or later is needed): install the "
            "pinned psycopg2-binary"
        ) from None
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


_voidp = ctypes.c_void_p
_cancel_create = _function("PQcancelCreate", _voidp, _voidp)
_cancel_start = _function("PQcancelStart", ctypes.c_int, _voidp)
_cancel_poll = _function("PQcancelPoll", ctypes.c_int, _voidp)
_cancel_socket = _function("PQcancelSocket", ctypes.c_int, _voidp)
_cancel_finish = _function("PQcancelFinish", None, _voidp)
_backend_pid = _function("PQbackendPID", ctypes.c_int, _voidp)
_result_memory = _function("PQresultMemorySize", ctypes.c_size_t, _voidp)

# PostgresPollingStatusType
_POLLING_FAILED, _POLLING_READING, _POLLING_WRITING, _POLLING_OK = 0, 1, 2, 3
# A fresh PGconn's input and output buffers, and its row buffer's entries (fe-connect.c).
_INITIAL_BUFFER = 16384
_INITIAL_ROW_BUFFER = 32
# From `inBufSize`: inStart, inCursor, inEnd (ints), outBuffer (pointer), outBufSize,
# outCount, outMsgStart, outMsgEnd (ints), rowBuf (pointer), rowBufLen (int), result.
_OUT_BUF_SIZE, _ROW_BUF, _ROW_BUF_LEN, _RESULT = 24, 40, 48, 56
_SEARCH_BYTES = 2048  # be_pid sits within a PGconn's first 2 KiB (at 844 in libpq 17)


class LayoutError(RuntimeError):
    """This libpq's PGconn is not laid out as the gateway's memory bound expects."""


@dataclass(frozen=True)
class _Layout:
    in_buf_size: int  # offset of inBufSize in PGconn

    @property
    def result(self) -> int:
        return self.in_buf_size + _RESULT


_layout: _Layout | None = None
_layout_lock = threading.Lock()


def _int_at(address: int) -> int:
    return ctypes.c_int.from_address(address).value


def _pointer_at(address: int) -> int | None:
    return ctypes.c_void_p.from_address(address).value


def _find_layout(pgconn: int) -> _Layout:
    """Where inBufSize is, from a fresh connection: after be_pid, the signature of buffers
    no byte has yet been read into."""
    pid = _backend_pid(pgconn)
    for pid_offset in range(0, _SEARCH_BYTES, 4):
        if _int_at(pgconn + pid_offset) != pid:
            continue
        for distance in range(8, 160, 4):
            base = pgconn + pid_offset + distance
            if (pid_offset + distance) % 8 == 0 and (
                _int_at(base) == _INITIAL_BUFFER
                and _int_at(base + _OUT_BUF_SIZE) == _INITIAL_BUFFER
                and _int_at(base + _ROW_BUF_LEN) == _INITIAL_ROW_BUFFER
                and _pointer_at(base - 8)  # inBuffer
                and _pointer_at(base + 16)  # outBuffer
                and _pointer_at(base + _ROW_BUF)
                and _pointer_at(base + _RESULT) is None  # idle: no result being built
            ):
                return _Layout(pid_offset + distance)
    raise LayoutError(
        "psycopg2's libpq does not lay out its connection as libpq 15-17 do, so the "
        "gateway cannot bound what a result holds: install the pinned psycopg2-binary"
    )


def learn_layout(connection: ext.connection) -> None:
    """Find the offsets once per process, on a connection that has run nothing yet."""
    global _layout
    with _layout_lock:
        if _layout is None:
            _layout = _find_layout(connection.pgconn_ptr)


def buffered(connection: ext.connection) -> int:
    """Bytes libpq holds for this connection: its input buffer and the result it builds."""
    assert _layout is not None, "learn_layout() runs at the first connection"
    pgconn = connection.pgconn_ptr
    if not pgconn:
        return 0
    result = _pointer_at(pgconn + _layout.result)
    return _int_at(pgconn + _layout.in_buf_size) + (_result_memory(result) if result else 0)


def cancel(
    connection: ext.connection, timeout_s: float, ready: Callable[[int, bool, float], bool]
) -> bool:
    """Ask the server to cancel the connection's statement, waiting at most `timeout_s` for
    it to take the request, through `ready(fileno, writing, timeout)` (the caller's kind of
    wait: cooperative under gevent). True when the server took it."""
    handle = _cancel_create(connection.pgconn_ptr)
    if not handle:
        return False
    try:
        if not _cancel_start(handle):
            return False
        deadline = time.monotonic() + timeout_s
        while True:
            state = _cancel_poll(handle)
            if state == _POLLING_OK:
                return True
            if state == _POLLING_FAILED:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not ready(_cancel_socket(handle), state == _POLLING_WRITING, left):
                return False
    finally:
        _cancel_finish(handle)
