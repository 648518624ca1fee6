"""HTTP/1.1 on one client connection: requests parsed by httptools (llhttp, the C parser
uvicorn and the e2e probe use), answered by the WSGI app, each answer's head sent with its
first body bytes.

gunicorn still runs the processes (app.server); its own HTTP/1 code, which parses in Python,
took about a quarter of a request's CPU (docs/benchmarks.md, "The HTTP server"). What this
keeps of it: a request line of at most 4094 bytes (414), at most 100 header fields of at most
8190 bytes each (431), header names with an underscore dropped (they would pass for their
hyphenated twin), a JSON answer to a request it cannot parse (400), `Expect: 100-continue`,
chunked bodies both ways, HTTP/1.0, pipelined requests, and a connection closed after an
answer whose request body was not read to its end. The worker bounds the wait for each
request's head (the keep-alive timeout) and every read and write (the socket's timeout).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import httptools

from app.encode import dumps
from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.responses import error_document, new_request_id
from app.seconds import EverySecond

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELDS = 100
MAX_FIELD_BYTES = 8190
# A head still unfinished after this many bytes is refused (431): llhttp itself has no bound.
MAX_HEAD_BYTES = 64 * 1024
READ_BYTES = 64 * 1024
# A body up to this size is copied behind its head to leave in one send; a larger one is
# sent apart, as a copy of it would cost its size in memory again.
JOIN_BODY_BYTES = 64 * 1024
# After an answer whose request body was not read to its end: what the client still sends
# is read and dropped for this long before the close, so that a close with unread bytes
# (a TCP reset) does not destroy the answer on its way.
LINGER_S = 2.0
_NO_BODY_STATUSES = (b"1", b"204", b"304")


class RequestRefused(Exception):
    """A request this server answers itself, never the app's, and then closes."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class MalformedBody(Exception):
    """The body's framing is broken (a chunk): the client's error, answered by the app."""


def write_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """An answer of the contract's JSON error, the connection to be closed after it."""
    text = f"{reason}: {message}" if message else reason
    body = dumps(error_document(ApiError(status, text)))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {new_request_id()}\r\n"
    )
    if status == 503:
        head += f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)


def send_all(sock: socket.socket, data: bytes) -> None:
    """`sendall` within one socket timeout, as gevent's is, trying one `send` first:
    gevent's sendall asks the kernel for the socket's buffer size (a getsockopt) and goes
    through three Python layers at every call, 5.7 us against 2.3 for one send of an answer
    (timeit, a socket pair). An answer that fits the socket's buffer leaves in that send;
    the rest of one that does not gets what is left of the timeout, not a timeout anew."""
    started = time.monotonic()
    sent = sock.send(data)
    if sent == len(data):
        return
    timeout = sock.gettimeout()
    if timeout is not None:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)
    try:
        sock.sendall(memoryview(data)[sent:])
    finally:
        sock.settimeout(timeout)


class _Message:
    """One request as the parser has read it so far."""

    __slots__ = (
        "body",
        "complete",
        "error",
        "expects_continue",
        "headed",
        "headers",
        "keep_alive",
        "method",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []  # (WSGI key without HTTP_, value)
        self.body: deque[bytes] = deque()
        self.method = ""
        self.version = "1.1"
        self.keep_alive = False
        self.expects_continue = False
        self.headed = False  # its head is complete
        self.complete = False  # its body too
        self.error = ""  # its body's framing broke here

    def unread(self, data: bytes) -> None:
        """Put what a read took beyond what it returns back in front of the body."""
        self.body.appendleft(data)


_date = EverySecond(lambda second: formatdate(second, usegmt=True))  # the Date header


class Connection:
    """Serves one client connection until it ends, is refused, or must close."""

    def __init__(
        self,
        sock: socket.socket,
        addr: Any,
        app: Callable,
        environ: dict[str, Any],
        waiting_for_head: Callable[[bool], AbstractContextManager[None]],
        keep_serving: Callable[[], bool],
    ) -> None:
        self._sock = sock
        self._app = app
        self._base = {
            **environ,
            "REMOTE_ADDR": addr[0] if isinstance(addr, tuple) else "",
            "REMOTE_PORT": str(addr[1]) if isinstance(addr, tuple) else "",
        }
        self._waiting_for_head = waiting_for_head
        self._keep_serving = keep_serving
        self._parser = httptools.HttpRequestParser(self)
        self._messages: deque[_Message] = deque()
        # Bytes received since the parser last got somewhere (a head complete, body bytes, a
        # request complete): a head, a trailer or chunk framing must not grow without bound.
        self._idle_bytes = 0
        self._progressed = False
        self._refused: RequestRefused | None = None
        self._ended = False  # nothing more will be parsed (end of input, upgrade, error)
        self._answered = False  # a request of this connection has been answered

    # -- the parser's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages.append(_Message())

    def on_url(self, url: bytes) -> None:
        message = self._messages[-1]
        message.url += url
        if len(message.url) > MAX_REQUEST_LINE:
            raise RequestRefused(414, "URI Too Long", f"over {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self._messages[-1]
        if len(name) + len(value) > MAX_FIELD_BYTES:
            raise RequestRefused(
                431, "Request Header Fields Too Large", f"a field over {MAX_FIELD_BYTES} bytes"
            )
        if len(message.headers) >= MAX_HEADER_FIELDS:
            raise RequestRefused(
                431, "Request Header Fields Too Large", f"over {MAX_HEADER_FIELDS} fields"
            )
        if b"_" in name:
            return
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        message.headers.append((key, text))
        if key == "EXPECT" and text.lower() == "100-continue":
            message.expects_continue = True

    def on_headers_complete(self) -> None:
        message = self._messages[-1]
        message.method = self._parser.get_method().decode("latin-1")
        message.version = self._parser.get_http_version()
        message.keep_alive = self._parser.should_keep_alive()
        if message.version not in ("1.0", "1.1"):
            raise RequestRefused(
                505, "HTTP Version Not Supported", f"HTTP/{message.version}: 1.0 and 1.1 are served"
            )
        message.headed = True
        self._progressed = True

    def on_body(self, body: bytes) -> None:
        self._messages[-1].body.append(body)
        self._progressed = True

    def on_message_complete(self) -> None:
        self._messages[-1].complete = True
        self._progressed = True

    # -- reading --------------------------------------------------------------------------

    def _receive(self) -> bool:
        """Feed what the client sent next to the parser; False at the end of its input."""
        if self._ended:
            return False
        data = self._sock.recv(READ_BYTES)
        if not data:
            self._ended = True
            return False
        self._progressed = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            self._stop(error.__context__ or error)
        except httptools.HttpParserUpgrade:
            self._ended = True  # what follows is another protocol: answer, then close
        except httptools.HttpParserError as error:
            self._stop(error)
        self._idle_bytes = 0 if self._progressed else self._idle_bytes + len(data)
        if self._idle_bytes > MAX_HEAD_BYTES and not self._ended:
            self._stop(
                RequestRefused(
                    431,
                    "Request Header Fields Too Large",
                    f"over {MAX_HEAD_BYTES} bytes of head, trailer or chunk framing",
                )
            )
        return True

    def _stop(self, error: BaseException) -> None:
        """The parser cannot go on: a body's framing broke, or a head is refused."""
        self._ended = True
        last = self._messages[-1] if self._messages else None
        if last is not None and last.headed and not last.complete:
            last.error = str(error) or type(error).__name__  # its app answers 400
        elif isinstance(error, RequestRefused):
            self._refused = error
        else:
            self._refused = RequestRefused(400, "Bad Request", str(error))

    def _next(self) -> _Message | None:
        """The next request with its head complete, waiting for it within the worker's bound
        (None when the client ended, went quiet, or its request is refused)."""
        with self._waiting_for_head(self._answered):
            while not (self._messages and self._messages[0].headed):
                if not self._receive():
                    break
        if self._messages and self._messages[0].headed:
            return self._messages[0]
        if self._refused is not None:
            refused = self._refused
            write_error(self._sock, refused.status, refused.reason, refused.message)
        return None

    def read_body(self, message: _Message, size: int) -> bytes:
        """Up to `size` bytes of `message`'s body; b"" at its end (or the client's)."""
        while not message.body:
            if message.error:
                raise MalformedBody(message.error)
            if message.complete:
                return b""
            if message.expects_continue:
                message.expects_continue = False
                self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if not self._receive():
                return b""
        chunk = message.body.popleft()
        if len(chunk) > size:
            chunk, rest = chunk[:size], chunk[size:]
            message.unread(rest)
        return chunk

    # -- serving --------------------------------------------------------------------------

    def serve(self) -> None:
        """Answer requests in order until one must be the last."""
        try:
            while (message := self._next()) is not None:
                if not self._answer(message):
                    return
                self._messages.popleft()
                self._answered = True
        except OSError:  # the client went away, or stalled past the socket's timeout
            return

    def _answer(self, message: _Message) -> bool:
        """Run the app for one request and send its answer; whether to read another."""
        last = self._ended and message is self._messages[-1]  # nothing after it is parsed
        answer = _Answer(self._sock, message, message.keep_alive and not last, self._keep_serving)
        try:
            result = self._app(self._environ(message), answer.start_response)
            try:
                for data in result:
                    answer.write(data)
                answer.finish()
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except OSError:
            raise
        except Exception:
            log.exception("unexpected error answering a request")
            if not answer.head_sent:
                write_error(self._sock, 500, "Internal Server Error", "")
            return False
        if not message.complete:
            self._linger()
            return False
        return answer.keep

    def _linger(self) -> None:
        """Close the sending side and drop what the client still sends, for a moment."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
            ends = time.monotonic() + LINGER_S
            while (left := ends - time.monotonic()) > 0:
                self._sock.settimeout(left)
                if not self._sock.recv(READ_BYTES):
                    return

    def _environ(self, message: _Message) -> dict[str, Any]:
        url = message.url.decode("latin-1")
        if url.startswith("/"):
            path, _, query = url.partition("?")
        else:  # the absolute form, as sent to a proxy
            parts = urlsplit(url)
            path, query = parts.path or "/", parts.query
        environ = {
            **self._base,
            "REQUEST_METHOD": message.method,
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
            "QUERY_STRING": query,
            "RAW_URI": url,
            "SERVER_PROTOCOL": f"HTTP/{message.version}",
            "wsgi.input": RequestBody(self, message),
        }
        for key, value in message.headers:
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ


class RequestBody:
    """`wsgi.input`: the request's body as the parser decodes it (chunked or not), read
    from the socket only as the app asks for it."""

    def __init__(self, connection: Connection, message: _Message) -> None:
        self._connection = connection
        self._message = message

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._connection.read_body(self._message, size)
        return b"".join(iter(lambda: self.read(READ_BYTES), b""))

    def buffered(self) -> bool:
        """Whether a read returns without waiting for the client: the parser holds some of
        the body, or has seen its end (or its framing break)."""
        message = self._message
        return bool(message.body) or message.complete or bool(message.error)

    def readline(self, size: int | None = -1) -> bytes:
        line = b""
        while size is None or size < 0 or len(line) < size:
            wanted = READ_BYTES if size is None or size < 0 else size - len(line)
            chunk = self.read(wanted)
            end = chunk.find(b"\n") + 1
            if end:
                line += chunk[:end]
                if chunk[end:]:
                    self._message.unread(chunk[end:])
                break
            if not chunk:
                break
            line += chunk
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class _Answer:
    """The answer to one request: `start_response`, then its body written as it comes."""

    def __init__(
        self, sock: socket.socket, message: _Message, keep: bool, keep_serving: Callable[[], bool]
    ) -> None:
        self._sock = sock
        self._message = message
        self.keep = keep
        self._keep_serving = keep_serving
        self.head_sent = False
        self._status = ""
        self._headers: list[tuple[str, str]] = []
        self._chunked = False
        self._bodiless = False
        self._left: int | None = None  # bytes the Content-Length still allows

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.head_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self._status, self._headers = status, headers
        self._left = None
        for name, value in headers:
            if name.lower() == "content-length":
                self._left = int(value)
        code = status.encode("latin-1")
        self._bodiless = self._message.method == "HEAD" or code.startswith(_NO_BODY_STATUSES)
        self._chunked = self._left is None and not self._bodiless and self._message.version == "1.1"
        if self._left is None and not self._bodiless and not self._chunked:
            self.keep = False  # HTTP/1.0 without a length: the close ends the body
        return self.write

    def _head(self) -> bytes:
        lines = [f"HTTP/1.1 {self._status}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in self._headers)
        lines.append(f"Date: {_date(int(time.time()))}\r\n")
        if self._chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        if not self._message.complete or not self._keep_serving():
            # Its body was not read to the end (nothing more to parse), or the worker stops
            # or drains (asked when the answer starts: a drain may begin during the request).
            self.keep = False
        if not self.keep:
            lines.append("Connection: close\r\n")
        elif self._message.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        return "".join(lines).encode("latin-1") + b"\r\n"

    def write(self, data: bytes) -> None:
        if self._bodiless:
            data = b""
        elif self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
        if self._chunked and data:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if not self.head_sent:
            self.head_sent = True
            head = self._head()
            if len(data) <= JOIN_BODY_BYTES:
                send_all(self._sock, head + data)
                return
            send_all(self._sock, head)
        if data:
            send_all(self._sock, data)

    def finish(self) -> None:
        if not self.head_sent:
            self.write(b"")
        if self._chunked:
            self._sock.sendall(b"0\r\n\r\n")


def environ_base(server: tuple[str, int], scheme: str, multiprocess: bool) -> dict[str, Any]:
    """What every request's environ on one listener shares."""
    return {
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": "pg-gateway",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
