"""Starting the peers: ports they can all bind."""

import socket

import pytest

from bench import systems


def _two_free_ports_in_a_row() -> int:
    """The first of two free ports in a row, both bound here a moment ago (any port of the
    machine may be in use: after a bench, many wait in TIME_WAIT)."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            try:
                second.bind(("127.0.0.1", first.getsockname()[1] + 1))
            except OSError:
                continue
            return first.getsockname()[1]


def test_postgres_meta_gets_a_port_whose_next_one_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy_next = taken.getsockname()[1] - 1  # a port whose next one is in use
        good = _two_free_ports_in_a_row()
        offered = iter([busy_next, good])
        monkeypatch.setattr(systems, "free_port", lambda: next(offered))
        assert systems.free_port_and_next() == good
