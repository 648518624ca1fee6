"""The load probe's HTTP/1.1 client: one connection over a plain socket, answers parsed by
httptools (llhttp, the parser uvicorn uses).

urllib3 cost the probe about 1 ms of CPU a request, more than the gateway spends serving it,
so on a busy 2-core runner the probe, not the deployment, set the pace
(docs/gate.md, "When a run cannot judge"). This keeps what the probe relied on urllib3 for
and nothing else: a connection the server closed while it sat idle is noticed before it is
reused (it reads as end of file), nothing is retried, and the local port names each TCP
connection.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass, field

import httptools

READ_SIZE = 65536


class BadAnswer(Exception):
    """The server's bytes were not an HTTP/1.1 answer, or stopped before its end."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    closed: bool  # the answer said `Connection: close`; the connection is gone


def request_bytes(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A whole POST as sent: made once per client, reused for every request."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Reader:
    """httptools' callbacks for one answer."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.closed = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.strip().lower() == b"close":
            self.closed = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass
class ProbeConnection:
    """A client's connection to host:port, opened when needed and reopened after the server
    closed it; `local_port` is that of the TCP connection the last request went over."""

    host: str
    port: int
    timeout_s: float
    local_port: int = 0
    _sock: socket.socket | None = field(default=None, repr=False)

    def request(self, raw: bytes) -> Answer:
        """Send `raw` (see request_bytes) and read its answer. Raises OSError (connect, send,
        read, timeout) or BadAnswer; the connection is closed then, and nothing is retried."""
        sock = self._open()
        try:
            sock.sendall(raw)
            answer = self._read(sock)
        except BaseException:
            self.close()
            raise
        if answer.closed:
            self.close()
        return answer

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self) -> socket.socket:
        if self._sock is not None and _dropped(self._sock):
            self.close()
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.local_port = sock.getsockname()[1]
            self._sock = sock
        return self._sock

    def _read(self, sock: socket.socket) -> Answer:
        reader = _Reader()
        parser = httptools.HttpResponseParser(reader)
        while not reader.complete:
            data = sock.recv(READ_SIZE)
            if not data:
                raise BadAnswer("the server closed the connection before its answer ended")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as error:
                raise BadAnswer(f"not an HTTP/1.1 answer: {error}") from None
        return Answer(parser.get_status_code(), b"".join(reader.body), reader.closed)


def _dropped(sock: socket.socket) -> bool:
    """An idle kept-alive connection that is readable was closed by the server (or it sent
    something unasked): either way it cannot carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
