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


def pods_at_once(deployment: dict) -> int:
    """Back-to-back rolling updates: the previous one's old pods may still be draining (up to
    terminationGracePeriodSeconds) while this one runs its old pods and its surge: an e2e run
    saw PostgreSQL refuse "too many connections for role" when only replicas + maxSurge
    were counted."""
    replicas = deployment["spec"]["replicas"]
    return replicas + replicas + deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]


def test_every_pod_of_back_to_back_rollouts_fits_each_logins_connection_limit() -> None:
    deployment, config = _documents("deployment.yaml"), _documents("configmap.yaml")["data"]
    pods = pods_at_once(deployment)
    # Each worker's pool, plus one connection that ends a backend outliving its request;
    # each pod's master opens one more for /readyz.
    per_login = pods * int(config["WORKERS"]) * (int(config["POOL_MAX"]) + 1) + pods
    limits = dict(re.findall(r"ALTER ROLE (\w+) CONNECTION LIMIT (\d+);", ROLES_SQL.read_text()))
    assert set(limits) == {"gateway", "reader"}
    for login, limit in limits.items():
        assert per_login <= int(limit), (login, per_login, limit)
    assert sum(int(limit) for limit in limits.values()) <= CONNECTIONS_FOR_LOGINS


def test_the_e2e_harness_writes_the_tokens_as_deploy_sh_does() -> None:
    """scripts/deploy.sh spells the tokens' options in a printf format; the harness keeps
    them in harness.names: the copies must agree."""
    script = (paths.REPO_ROOT / "scripts" / "deploy.sh").read_text()
    expected = f"'%s{names.ADMIN_TOKEN_OPTIONS},%s{names.READER_TOKEN_OPTIONS}'"
    assert f"printf {expected}" in script
