"""The connections the manifests' gateway pods may open fit what roles.sql allows each
login, and all logins fit PostgreSQL's max_connections (copies held together)."""

from __future__ import annotations

import re

import yaml

from harness import names, paths

BASE = paths.MANIFESTS_DIR / "base"
ROLES_SQL = BASE / "postgres" / "roles.sql"
# PostgreSQL's defaults: max_connections 100, of which superuser_reserved_connections 3.
CONNECTIONS_FOR_LOGINS = 100 - 3


def _documents(name: str) -> dict:
    return yaml.safe_load((BASE / "gateway" / name).read_text())


def test_every_pod_of_a_rolling_update_fits_each_logins_connection_limit() -> None:
    deployment, config = _documents("deployment.yaml"), _documents("configmap.yaml")["data"]
    pods = (
        deployment["spec"]["replicas"] + deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    )
    per_login = pods * int(config["WORKERS"]) * int(config["POOL_MAX"])
    limits = dict(re.findall(r"ALTER ROLE (\w+) CONNECTION LIMIT (\d+);", ROLES_SQL.read_text()))
    assert set(limits) == {"gateway", "reader"}
    for login, limit in limits.items():
        # Room beyond the pools: a connection that ends a backend, and a readiness check.
        assert per_login + int(config["POOL_MAX"]) <= int(limit), (login, per_login, limit)
    assert sum(int(limit) for limit in limits.values()) <= CONNECTIONS_FOR_LOGINS


def test_the_e2e_harness_writes_the_tokens_as_deploy_sh_does() -> None:
    """scripts/deploy.sh spells the tokens' options in a printf format; the harness keeps
    them in harness.names: the copies must agree."""
    script = (paths.REPO_ROOT / "scripts" / "deploy.sh").read_text()
    expected = f"'%s{names.ADMIN_TOKEN_OPTIONS},%s{names.READER_TOKEN_OPTIONS}'"
    assert f"printf {expected}" in script
