"""What the smoke checks talk to: the admin token from API_TOKENS, the URL from the Service."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests

from harness import names
from harness.smoke import target
from harness.smoke.target import first_token, has_address, service_url
from harness.steps import HarnessError


def service(kind: str, ingress: list | None = None, node_port: int | None = None):
    port = SimpleNamespace(port=names.GATEWAY_PORT, node_port=node_port)
    status = SimpleNamespace(load_balancer=SimpleNamespace(ingress=ingress))
    return SimpleNamespace(spec=SimpleNamespace(type=kind, ports=[port]), status=status)


@pytest.mark.parametrize(
    ("api_tokens", "token"),
    [
        ("admin,reader-token:reader", "admin"),
        ("admin:gateway,other", "admin"),
        (" , admin ,x:reader", "admin"),
        ("solo", "solo"),
    ],
)
def test_the_admin_token_is_the_first_entry_without_its_role(api_tokens, token) -> None:
    assert first_token(api_tokens) == token


def test_empty_api_tokens_is_an_error_not_an_empty_token() -> None:
    with pytest.raises(HarnessError, match="without authentication"):
        first_token(" , ")


def test_a_nodeport_is_reached_on_loopback_as_kind_publishes_it() -> None:
    assert service_url(service("NodePort", node_port=31234)) == "http://127.0.0.1:31234"


def test_a_load_balancer_is_reached_at_its_hostname_or_ip() -> None:
    hostname = SimpleNamespace(hostname="abc.elb.amazonaws.com", ip=None)
    lb = service("LoadBalancer", ingress=[hostname], node_port=30001)
    assert service_url(lb) == f"http://abc.elb.amazonaws.com:{names.GATEWAY_PORT}"
    ip = SimpleNamespace(hostname=None, ip="203.0.113.7")
    assert service_url(service("LoadBalancer", ingress=[ip])) == "http://203.0.113.7:5000"


def test_a_load_balancer_without_an_address_is_waited_for() -> None:
    assert not has_address(service("LoadBalancer", ingress=None))
    assert has_address(service("LoadBalancer", ingress=[SimpleNamespace(hostname="h", ip=None)]))
    assert has_address(service("NodePort", node_port=31234))


def test_a_cluster_ip_service_asks_for_the_url() -> None:
    with pytest.raises(HarnessError, match="--url"):
        service_url(service("ClusterIP"))


def test_the_token_never_shows_in_a_repr() -> None:
    gateway = target.Gateway("http://127.0.0.1:31234", "s3cret-token")
    assert "s3cret" not in repr(gateway)


def test_a_request_without_answer_names_it_without_the_frames_that_hold_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = []

    def refuse(url, headers, **_kwargs):
        sent.append(headers)
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(requests, "post", refuse)
    gateway = target.Gateway("http://127.0.0.1:31234", "s3cret-token")
    with pytest.raises(HarnessError) as failed:
        gateway.query("select 1")
    assert sent == [{"Authorization": "Bearer s3cret-token"}]
    assert (
        str(failed.value)
        == "POST http://127.0.0.1:31234/query: ConnectionError: connection refused"
    )
    assert failed.value.__suppress_context__  # the request's own traceback is not shown
    for token in (None, "other"):
        with pytest.raises(HarnessError):
            gateway.query("select 1", token=token)
    assert sent[1:] == [{}, {"Authorization": "Bearer other"}]
