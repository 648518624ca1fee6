"""The gateway server's floor: the gateway's own server answering with a floor app."""

from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from bench import floors


@pytest.mark.parametrize("app", ["bare WSGI", "Flask"])
def test_the_gateway_servers_floor_answers_the_gateway_s_select_1(app: str, tmp_path: Path) -> None:
    with (tmp_path / "floor.log").open("w") as log:
        starters = dict(floors.starters(log))
        service = starters[f"{floors.FLOOR}gateway server, {app}"]()
    try:
        body, headers = b'{"query":"select 1"}', {"Content-Type": "application/json"}
        request = Request(service.url + "/query", body, headers)  # noqa: S310 - loopback
        with urlopen(request, timeout=5) as answer:  # noqa: S310 - a loopback URL
            assert (answer.status, answer.read()) == (200, floors.ANSWER)
            # Answered by app.http1: its headers, not gunicorn's.
            assert answer.headers["Server"] is None
    finally:
        service.stop()
