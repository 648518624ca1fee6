"""The gateway's HTTP/1 response puts on the wire exactly what gunicorn's puts there, the head
and a small body in one send (app.server.GatewayResponse)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from gunicorn import http
from gunicorn.config import Config
from gunicorn.http import wsgi

from app.server import JOIN_BODY_BYTES, GatewayResponse

GUNICORN_RESPONSE = wsgi.Response.__mro__[1]  # app.server put its own in gunicorn's place
_DATE = re.compile(rb"\r\nDate: [^\r]*")


class RecordingSocket:
    """A real socket that keeps what each send call was given."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return self._sock.send(data)

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self._sock.sendall(data)


@pytest.fixture
def parsed_request() -> Iterator[http.Request]:
    """A request as gunicorn's parser reads it from a socket."""
    client, server = socket.socketpair()
    client.sendall(b"GET /query HTTP/1.1\r\nHost: gateway\r\n\r\n")
    yield next(http.get_parser(Config(), server, ("127.0.0.1", 1)))
    client.close()
    server.close()


def answer(
    response_class: type, request: http.Request, headers: list[tuple[str, str]], body: list[bytes]
) -> list[bytes]:
    """The send calls of one answer, with the Date header (the clock's) taken out."""
    sender, receiver = socket.socketpair()
    sender.setblocking(True)
    recording = RecordingSocket(sender)
    response = response_class(request, recording, Config())
    response.start_response("200 OK", headers)
    try:
        for chunk in body:
            response.write(chunk)
        response.close()
    finally:
        sender.close()
        receiver.close()
    return [_DATE.sub(b"", data) for data in recording.sends]


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("Content-Type", "application/json"), ("Content-Length", "2")], [b"{}"]),
        ([("Content-Length", "0")], [b""]),
        ([("Content-Length", "0")], []),
        ([("Content-Type", "application/x-ndjson")], [b"{}\n", b"{}\n"]),
        ([("Content-Length", str(JOIN_BODY_BYTES + 1))], [b"x" * (JOIN_BODY_BYTES + 1)]),
    ],
    ids=["json", "empty", "no-write", "chunked", "large"],
)
def test_the_same_bytes_as_gunicorns_response(
    parsed_request: http.Request, headers: list[tuple[str, str]], body: list[bytes]
) -> None:
    ours = answer(GatewayResponse, parsed_request, headers, body)
    theirs = answer(GUNICORN_RESPONSE, parsed_request, headers, body)
    assert b"".join(ours) == b"".join(theirs)
    assert b"".join(ours).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_small_answer_leaves_in_one_send(parsed_request: http.Request) -> None:
    headers = [("Content-Type", "application/json"), ("Content-Length", "11")]
    sends = answer(GatewayResponse, parsed_request, headers, [b'{"rows":[]}'])
    assert len(sends) == 1, sends
    assert sends[0].endswith(b'\r\n\r\n{"rows":[]}')


def test_a_large_body_is_not_copied_behind_its_head(parsed_request: http.Request) -> None:
    body = b"x" * (JOIN_BODY_BYTES + 1)
    sends = answer(GatewayResponse, parsed_request, [("Content-Length", str(len(body)))], [body])
    assert sends[0].endswith(b"\r\n\r\n")
    assert b"".join(sends[1:]) == body


def test_gunicorn_makes_the_gateways_response() -> None:
    assert wsgi.Response is GatewayResponse
    assert GUNICORN_RESPONSE.__module__ == "gunicorn.http.wsgi"
