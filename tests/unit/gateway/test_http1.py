"""app.http1 on real sockets: what a client sends, what the WSGI app sees, what comes back."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httptools
import pytest

from app.http1 import (
    JOIN_BODY_BYTES,
    LINGER_S,
    MAX_FIELD_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE,
    Connection,
    MalformedBody,
    environ_base,
    send_all,
)

App = Callable[[dict[str, Any], Callable], Iterable[bytes]]


def echo(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """Answers what it was asked, as JSON: method, path, query, body, some headers."""
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "body": body.decode(),
        "type": environ.get("CONTENT_TYPE"),
        "x": environ.get("HTTP_X_A"),
        "headers": sorted(key for key in environ if key.startswith("HTTP_")),
    }
    answer = json.dumps(seen).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


class RecordingSocket:
    """A real socket that keeps what each send took (`send`) or was given (`sendall`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        sent = self._sock.send(data)
        self.sends.append(bytes(data[:sent]))
        return sent

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def connection(
    sock: Any, app: App = echo, keep_serving: Callable[[], bool] = lambda: True
) -> Connection:
    """A connection as a worker makes it, with no bound on the wait for a head."""
    return Connection(
        sock,
        ("127.0.0.1", 5000),
        app,
        environ_base(("127.0.0.1", 8080), "http", False),
        contextlib.nullcontext,
        keep_serving,
    )


def received_all(client: socket.socket) -> bytes:
    received = b""
    while chunk := client.recv(1 << 20):
        received += chunk
    return received


def serve_while(talk: Callable[[socket.socket], None], app: App = echo) -> None:
    """One connection served while `talk`, in a thread, speaks as its client."""
    client, server = socket.socketpair()
    thread = threading.Thread(target=talk, args=(client,))
    thread.start()
    with client, server:
        connection(server, app).serve()
        server.shutdown(socket.SHUT_WR)
        thread.join(10)


def serve(
    raw: bytes, app: App = echo, keep_serving: Callable[[], bool] = lambda: True
) -> tuple[bytes, list[bytes]]:
    """Everything the client got for `raw` (its sending side then closed), and the sends."""
    client, server = socket.socketpair()
    recording = RecordingSocket(server)
    with client, server:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)
        connection(recording, app, keep_serving).serve()
        server.shutdown(socket.SHUT_WR)
        received = received_all(client)
    return received, recording.sends


def malformed_body_reader(caught: list[str]) -> App:
    """An app that reads the whole body, keeps what a MalformedBody said, and answers 400."""

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        try:
            environ["wsgi.input"].read()
        except MalformedBody as error:
            caught.append(str(error))
        start_response("400 Bad Request", [("Content-Length", "0")])
        return []

    return app


class Answers:
    """httptools' callbacks: each answer's status, headers and body."""

    def __init__(self) -> None:
        self.all: list[dict[str, Any]] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.all.append({"headers": {}, "body": b""})

    def on_status(self, _status: bytes) -> None:
        self.all[-1]["status"] = self.parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.all[-1]["headers"][name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.all[-1]["body"] += body


def answers(received: bytes) -> list[dict[str, Any]]:
    parsed = Answers()
    parsed.parser.feed_data(received)
    return parsed.all


def test_the_app_sees_the_request_and_its_answer_leaves_in_one_send() -> None:
    body = b'{"query":"select 1"}'
    raw = (
        b"POST /qu%65ry?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-A: 1\r\nX-A: 2\r\nX_A: spoofed\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    received, sends = serve(raw)
    [answer] = answers(received)
    seen = json.loads(answer["body"])
    assert seen == {
        "method": "POST",
        "path": "/query",
        "query": "a=1",
        "protocol": "HTTP/1.1",
        "body": body.decode(),
        "type": "application/json",
        "x": "1,2",  # repeated fields joined; the underscore spelling dropped
        "headers": ["HTTP_HOST", "HTTP_X_A"],
    }
    assert len(sends) == 1
    assert "date" in answer["headers"] and "connection" not in answer["headers"]


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    raw = b"".join(
        b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (n, n) for n in range(3)
    )
    received, _ = serve(raw)
    assert [json.loads(a["body"])["body"] for a in answers(received)] == ["0", "1", "2"]


def test_each_wait_for_a_head_says_whether_the_connection_answered_before() -> None:
    """The worker sheds idle connections that never had an answer before kept-alive ones."""
    waits: list[bool] = []

    def waiting(kept_alive: bool) -> contextlib.nullcontext[None]:
        waits.append(kept_alive)
        return contextlib.nullcontext()

    client, server = socket.socketpair()
    with client, server:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        client.shutdown(socket.SHUT_WR)
        Connection(
            server, ("127.0.0.1", 5000), echo, environ_base(("127.0.0.1", 8080), "http", False),
            waiting, lambda: True,
        ).serve()  # fmt: skip
    assert waits == [False, True, True]


def test_the_body_says_whether_a_read_would_wait_for_the_client() -> None:
    """The routes bound only a read that waits (app.routes._read)."""
    seen: list[tuple[bool, bytes]] = []
    waiting = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = environ["wsgi.input"]
        for _ in range(3):
            held = body.buffered()
            if not held:
                waiting.set()
            seen.append((held, body.read(100)))
        start_response("200 OK", [("Content-Length", "0")])
        return []

    def talk(client: socket.socket) -> None:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde")
        waiting.wait(10)
        client.sendall(b"fghij")
        client.shutdown(socket.SHUT_WR)
        received_all(client)

    serve_while(talk, app)
    assert seen == [(True, b"abcde"), (False, b"fghij"), (True, b"")]


def test_a_chunked_body_reaches_the_app_decoded() -> None:
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    [answer] = answers(serve(raw)[0])
    assert json.loads(answer["body"])["body"] == "abcde"


def test_a_malformed_chunk_is_the_apps_to_answer() -> None:
    caught: list[str] = []
    app = malformed_body_reader(caught)
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    received, _ = serve(raw, app)
    assert len(caught) == 1
    [answer] = answers(received)
    assert answer["status"] == 400 and answer["headers"]["connection"] == "close"


def test_a_streamed_answer_is_chunked_and_ends() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return [b"{}\n", b"", b"[]\n"]

    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    received, _ = serve(raw, app)
    assert received.count(b"Transfer-Encoding: chunked") == 2
    assert [a["body"] for a in answers(received)] == [b"{}\n[]\n"] * 2


def test_an_answer_larger_than_the_join_leaves_apart_from_its_head() -> None:
    large = b"x" * (JOIN_BODY_BYTES + 1)

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(large)))])
        return [large]

    received, sends = serve(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", app)
    assert len(sends) == 2 and sends[1] == large
    assert answers(received)[0]["body"] == large


def test_what_one_send_leaves_behind_follows_it() -> None:
    """An answer larger than the socket's buffer: the first send takes part of it, the
    rest goes after it, all of it in order."""
    client, server = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server.settimeout(10)  # as a worker's sockets have one: a send may take part
    data = bytes(range(256)) * 4096  # 1 MiB
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(received_all(client)))
    reader.start()
    recording = RecordingSocket(server)
    with client, server:
        send_all(recording, data)  # type: ignore[arg-type]
        server.shutdown(socket.SHUT_WR)
        reader.join(10)
    assert got == [data]
    assert len(recording.sends) == 2 and 0 < len(recording.sends[0]) < len(data)


def _filled(sock: socket.socket) -> None:
    """Send until the socket's buffer takes no more."""
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.send(b"x" * 65536)


def test_an_answer_gets_one_socket_timeout_in_all() -> None:
    """A client that reads once, when the first send has waited most of the timeout, then
    stalls: the rest gets what is left of the timeout (a timeout anew would give 1.8 s)."""
    client, server = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    _filled(server)
    server.settimeout(1.0)

    def read_once_then_stall() -> None:
        time.sleep(0.8)
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while client.recv(1 << 20):
                pass

    reader = threading.Thread(target=read_once_then_stall)
    reader.start()
    started = time.monotonic()
    with client, server, pytest.raises(TimeoutError):
        try:
            send_all(server, b"y" * (8 << 20))
        finally:
            took = time.monotonic() - started
            reader.join(10)
    assert 0.9 < took < 1.4


def test_a_body_past_its_content_length_is_cut() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abcdef"]

    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert [a["body"] for a in answers(serve(raw, app)[0])] == [b"abc", b"abc"]


def test_a_head_request_gets_the_length_and_no_body() -> None:
    raw = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    received, _ = serve(raw)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")  # no body bytes between the two


@pytest.mark.parametrize(
    ("request_head", "connection"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", "close"),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "close"),
    ],
    ids=["1.0", "1.0 keep-alive", "1.1 close"],
)
def test_the_connection_header_follows_the_request(request_head: bytes, connection: str) -> None:
    received, _ = serve(request_head + request_head)
    answered = answers(received)
    assert answered[0]["headers"]["connection"] == connection
    assert len(answered) == (2 if connection == "keep-alive" else 1)


def test_a_stopping_worker_closes_after_the_answer() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    answered = answers(serve(raw, keep_serving=lambda: False)[0])
    assert len(answered) == 1 and answered[0]["headers"]["connection"] == "close"


def test_an_unread_body_closes_the_connection_after_the_answer() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("413 Content Too Large", [("Content-Length", "0")])
        return []

    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    answered = answers(serve(raw, app)[0])
    assert len(answered) == 1 and answered[0]["headers"]["connection"] == "close"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_FIELD_BYTES + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * (MAX_HEADER_FIELDS + 1) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Endless: " + b"a" * MAX_HEAD_BYTES, 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ],
    ids=["malformed", "long line", "large field", "many fields", "endless head", "smuggling"],
)
def test_a_request_it_cannot_take_is_a_json_error_and_the_end(raw: bytes, status: int) -> None:
    received, _ = serve(raw + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [answer] = answers(received)
    assert answer["status"] == status
    assert answer["headers"]["content-type"] == "application/json"
    assert answer["headers"]["connection"] == "close"
    assert len(answer["headers"]["x-request-id"]) == 32
    assert "message" in json.loads(answer["body"])["error"]


def test_requests_before_a_refused_one_are_answered_then_the_refusal() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT A REQUEST\r\n\r\n"
    first, refused = answers(serve(raw)[0])
    assert first["status"] == 200 and "connection" not in first["headers"]
    assert refused["status"] == 400 and refused["headers"]["connection"] == "close"


def test_an_upgrade_request_is_answered_as_the_last() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0"
    [answer] = answers(serve(raw)[0])
    assert answer["status"] == 200 and answer["headers"]["connection"] == "close"


@pytest.mark.parametrize("line", [b"GET / HTTP/2.0\r\n", b"GET / HTTP/0.9\r\n"])
def test_a_version_other_than_1_0_and_1_1_is_refused(line: bytes) -> None:
    [answer] = answers(serve(line + b"Host: x\r\n\r\n")[0])
    assert answer["status"] == 505 and answer["headers"]["connection"] == "close"


def test_a_trailer_without_end_is_a_malformed_body() -> None:
    caught: list[str] = []
    app = malformed_body_reader(caught)
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\nX-Trailer: " + b"a" * (2 * MAX_HEAD_BYTES)
    )
    serve(raw, app)
    assert caught and "over 65536 bytes" in caught[0]


def test_a_pipelined_head_is_not_charged_for_the_body_before_it() -> None:
    body = b"b" * (62 * 1024)
    first = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    second = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 8000 + b"\r\n\r\n"
    # As a network delivers it: the body's end with the next head's start, then the head
    # in pieces, each read apart.
    pieces = [first + body + second[:100], second[100:4000], second[4000:]]
    received: list[bytes] = []

    def talk(client: socket.socket) -> None:
        for piece in pieces:
            client.sendall(piece)
            time.sleep(0.2)
        client.shutdown(socket.SHUT_WR)
        received.append(received_all(client))

    serve_while(talk)
    assert [a["status"] for a in answers(received[0])] == [200, 200]


def test_a_drain_that_starts_during_a_request_closes_its_connection() -> None:
    draining = []

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        draining.append(True)
        return echo(environ, start_response)

    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    answered = answers(serve(raw, app, keep_serving=lambda: not draining)[0])
    assert len(answered) == 1 and answered[0]["headers"]["connection"] == "close"


def test_the_linger_after_an_unread_body_is_bounded() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("413 Content Too Large", [("Content-Length", "0")])
        return []

    client, server = socket.socketpair()
    stop = threading.Event()

    def drip() -> None:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
        while not stop.wait(LINGER_S * 0.9):
            client.sendall(b"x")

    thread = threading.Thread(target=drip)
    thread.start()
    started = time.monotonic()
    with client, server:
        try:
            connection(server, app).serve()
            took = time.monotonic() - started
        finally:
            stop.set()
            thread.join(10)
    assert took < LINGER_S + 0.5


def test_an_app_failing_before_its_answer_is_a_500_and_the_end() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        raise RuntimeError("broken")

    received, _ = serve(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2, app)
    [answer] = answers(received)
    assert answer["status"] == 500 and answer["headers"]["connection"] == "close"


def test_an_app_failing_mid_answer_cuts_the_connection() -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        yield b"{}\n"
        raise RuntimeError("broken")

    received, _ = serve(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2, app)
    assert received.count(b"HTTP/1.1 ") == 1
    assert not received.endswith(b"0\r\n\r\n")  # no end of the chunked body: it was cut


def test_expect_100_continue_is_answered_when_the_body_is_read() -> None:
    got: list[bytes] = []

    def talk(client: socket.socket) -> None:
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        got.append(client.recv(100))  # the 100 first, the body after it
        client.sendall(b"ok")
        client.shutdown(socket.SHUT_WR)
        got.append(received_all(client))

    serve_while(talk)
    assert got[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert json.loads(answers(got[1])[0]["body"])["body"] == "ok"
