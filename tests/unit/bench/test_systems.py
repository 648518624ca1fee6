"""Starting the peers: ports they can all bind."""

import socket

import pytest

from bench import systems


def test_postgres_meta_gets_a_port_whose_next_one_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy_next = taken.getsockname()[1] - 1  # a port whose next one is in use
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            good = other.getsockname()[1]
        offered = iter([busy_next, good])
        monkeypatch.setattr(systems, "free_port", lambda: next(offered))
        assert systems.free_port_and_next() == good
