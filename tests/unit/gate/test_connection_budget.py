"""The connections the manifests' gateway pods may open fit what roles.sql allows each
login, all logins fit PostgreSQL's max_connections, and one pod alone carries the gate's
load (copies held together)."""

from __future__ import annotations

import re

import yaml

from harness import names, paths
from harness.e2e.availability import DEFAULT_CLIENTS, ClientKind
from harness.local.deployed import deployed_server

BASE = paths.MANIFESTS_DIR / "base"
ROLES_SQL = BASE / "postgres" / "roles.sql"
SUPERUSER_RESERVED_CONNECTIONS = 3  # PostgreSQL's default, not set in the manifests


def _documents(name: str) -> dict:
    return yaml.safe_load((BASE / "gateway" / name).read_text())


def _gateway_settings() -> dict[str, str]:
    """gateway/config.env, the env file kustomize makes the ConfigMap pg-gateway-config of."""
    lines = (BASE / "gateway" / "config.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def pods_at_once(deployment: dict) -> int:
    """Back-to-back rolling updates: the previous one's old pods may still be draining (up to
    terminationGracePeriodSeconds) while this one runs its old pods and its surge: an e2e run
    saw PostgreSQL refuse "too many connections for role" when only replicas + maxSurge
    were counted."""
    replicas = deployment["spec"]["replicas"]
    return replicas + replicas + deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]


def test_every_pod_of_back_to_back_rollouts_fits_each_logins_connection_limit() -> None:
    deployment, config = _documents("deployment.yaml"), _gateway_settings()
    pods = pods_at_once(deployment)
    # Each worker's pool, plus one connection that ends a backend outliving its request;
    # each pod's master opens one more for /readyz.
    per_login = pods * int(config["WORKERS"]) * (int(config["POOL_MAX"]) + 1) + pods
    limits = dict(re.findall(r"ALTER ROLE (\w+) CONNECTION LIMIT (\d+);", ROLES_SQL.read_text()))
    assert set(limits) == {"gateway", "reader"}
    for login, limit in limits.items():
        assert per_login <= int(limit), (login, per_login, limit)
    max_connections = int(deployed_server().settings["max_connections"])
    connections_for_logins = max_connections - SUPERUSER_RESERVED_CONNECTIONS
    assert sum(int(limit) for limit in limits.values()) <= connections_for_logins


def test_one_pod_alone_serves_the_gates_slow_queries_and_its_other_load() -> None:
    """While a node drains, one pod serves the whole load, and the slow-query clients' kept-
    alive connections may all land on one of its workers: that worker's pool must hold
    every slow query and still have a connection for the rest. A CI drain with POOL_MAX 3
    answered six slow queries in a row 504, each having waited for a connection."""
    slow_queries = sum(c.count for c in DEFAULT_CLIENTS if c.kind is ClientKind.SLOW_QUERY)
    assert int(_gateway_settings()["POOL_MAX"]) > slow_queries


def test_the_e2e_harness_writes_the_tokens_as_deploy_sh_does() -> None:
    """scripts/deploy.sh spells the tokens' options in a printf format; the harness keeps
    them in harness.names: the copies must agree."""
    script = (paths.REPO_ROOT / "scripts" / "deploy.sh").read_text()
    expected = f"'%s{names.ADMIN_TOKEN_OPTIONS},%s{names.READER_TOKEN_OPTIONS}'"
    assert f"printf {expected}" in script


def test_the_admin_token_admits_every_request_the_gates_load_has_in_flight() -> None:
    """Each of the load's clients has one request in flight at most, and all may reach one
    worker of the one pod left during a drain: beyond the admin token's `concurrency` that
    worker answers 429. An e2e drain with concurrency 10 (12 clients) answered four 429s."""
    options = dict(
        option.split("=", 1) for option in names.ADMIN_TOKEN_OPTIONS.split(":") if "=" in option
    )
    assert int(options["concurrency"]) >= sum(clients.count for clients in DEFAULT_CLIENTS)
