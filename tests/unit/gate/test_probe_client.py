"""The load probe's HTTP client over real sockets, against a server whose every byte the test
writes: what it must notice (a connection closed while idle, `Connection: close`, an answer cut
short or not HTTP, a server that never answers) and how the probe counts connections."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from harness.e2e.availability import ClientKind, Clients, LoadProbe
from harness.e2e.probeclient import BadAnswer, ProbeConnection, request_bytes

OK_BODY = b'{"result":[{"ok":1}]}'
Handler = Callable[[socket.socket], None]


def answer(body: bytes = OK_BODY, status: str = "200 OK", close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode()
    return head + connection + b"Content-Type: application/json\r\n\r\n" + body


def read_request(sock: socket.socket) -> bytes:
    """One request (headers and a Content-Length body), or b'' at end of file."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return data


@contextmanager
def server(handler: Handler) -> Iterator[int]:
    """A threaded TCP server on 127.0.0.1 running `handler` on each connection; its port."""

    class Handle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handler(self.request)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handle) as tcp:
        tcp.daemon_threads = True
        threading.Thread(target=tcp.serve_forever, args=(0.02,), daemon=True).start()
        try:
            yield tcp.server_address[1]
        finally:
            tcp.shutdown()


def keep_answering(sock: socket.socket) -> None:
    while request := read_request(sock):
        sock.sendall(answer(close=b"connection: close" in request.lower()))


def post(port: int, headers: dict[str, str] | None = None) -> bytes:
    return request_bytes("127.0.0.1", port, "/query", headers or {}, b'{"query": "select 1"}')


def test_a_request_is_sent_whole_with_its_length() -> None:
    raw = request_bytes("h", 1, "/query", {"Authorization": "Bearer t"}, b"{}")
    assert raw == (
        b"POST /query HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n"
        b"Authorization: Bearer t\r\n\r\n{}"
    )


def test_a_kept_alive_connection_carries_the_next_request() -> None:
    with server(keep_answering) as port:
        link = ProbeConnection("127.0.0.1", port, 5.0)
        first = link.request(post(port))
        first_port = link.local_port
        second = link.request(post(port))
        assert (first.status, first.body, first.closed) == (200, OK_BODY, False)
        assert second.body == OK_BODY and link.local_port == first_port


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    closed = threading.Event()

    def answer_once_then_close(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(answer())  # keep-alive promised, then the server closes it anyway
        sock.close()
        closed.set()

    with server(answer_once_then_close) as port:
        link = ProbeConnection("127.0.0.1", port, 5.0)
        link.request(post(port))
        first_port = link.local_port
        assert closed.wait(5)
        time.sleep(0.05)  # the FIN crosses the loopback
        assert link.request(post(port)).status == 200  # not a failure: a new connection
        assert link.local_port != first_port


def test_connection_close_ends_the_connection() -> None:
    with server(keep_answering) as port:
        link = ProbeConnection("127.0.0.1", port, 5.0)
        result = link.request(post(port, {"Connection": "close"}))
        first_port = link.local_port
        assert result.closed and result.status == 200
        link.request(post(port))
        assert link.local_port != first_port


def test_a_chunked_answer_is_read_whole() -> None:
    def chunked(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"5\r\nhello\r\n")
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")

    with server(chunked) as port:
        result = ProbeConnection("127.0.0.1", port, 5.0).request(post(port))
        assert (result.status, result.body) == (503, b"hello world")


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (answer()[:-5], "closed the connection before its answer ended"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.1 answer"),
    ],
)
def test_an_answer_cut_short_or_not_http_is_an_error(sent: bytes, message: str) -> None:
    def send_and_close(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(sent)

    with server(send_and_close) as port, pytest.raises(BadAnswer, match=message):
        ProbeConnection("127.0.0.1", port, 5.0).request(post(port))


def test_a_server_that_never_answers_times_out() -> None:
    release = threading.Event()

    def stall(sock: socket.socket) -> None:
        read_request(sock)
        release.wait(10)

    with server(stall) as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ProbeConnection("127.0.0.1", port, 0.3).request(post(port))
        release.set()
        assert time.monotonic() - started < 3


def test_the_probe_counts_requests_connections_and_failures() -> None:
    served = 0

    def every_fifth_fails(sock: socket.socket) -> None:
        nonlocal served
        while request := read_request(sock):
            served += 1
            close = b"connection: close" in request.lower()
            if served % 5 == 0:
                sock.sendall(answer(b"no", "503 Service Unavailable", close))
            else:
                sock.sendall(answer(close=close))

    clients = (Clients(ClientKind.KEEP_ALIVE, 2, 40.0), Clients(ClientKind.NEW_CONNECTION, 2, 40.0))
    with server(every_fifth_fails) as port:
        probe = LoadProbe("127.0.0.1", port, "token-not-used-here", clients)
        probe.start()
        time.sleep(1.0)
        probe.stop()
    totals = probe.totals()
    keep_alive, new_connection = totals[ClientKind.KEEP_ALIVE], totals[ClientKind.NEW_CONNECTION]
    assert keep_alive.requests >= 40 and new_connection.requests >= 40
    assert keep_alive.connections == 2  # one each, reused
    assert new_connection.connections == new_connection.requests  # one per request
    failures = probe.failures
    assert failures and all(s.status == 503 and s.error == "no" for s in failures)
    assert len(failures) == keep_alive.failed + new_connection.failed


def test_the_load_ends_when_stopped_not_when_the_last_answer_comes() -> None:
    """A slow query in flight at the stop is awaited, but its wait is not the load's time
    (it made the rate read low, nearer the inconclusive verdict)."""
    received, release = threading.Event(), threading.Event()

    def answer_when_released(sock: socket.socket) -> None:
        read_request(sock)
        received.set()
        release.wait(10)
        sock.sendall(answer())

    clients = (Clients(ClientKind.SLOW_QUERY, 1, 1.0),)
    with server(answer_when_released) as port:
        probe = LoadProbe("127.0.0.1", port, "token-not-used-here", clients)
        probe.start()
        assert received.wait(5)
        stopping = threading.Thread(target=probe.stop)
        stopping.start()
        time.sleep(0.2)
        released_at = time.monotonic()
        release.set()
        stopping.join(10)
    assert probe.stopped is not None and probe.stopped < released_at
    assert [s.status for s in probe.samples] == [200]  # the answer was awaited and counted
