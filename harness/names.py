"""The names and ports of what the gate creates and deploys, in one place.

The manifests (YAML) spell the workload names too; the manifest lint checks the rendered
objects against these, so a rename on one side only fails `nox -s lint`.
"""

from __future__ import annotations

CLUSTER = "pg-gateway"  # the kind cluster
NODE_PORT = 31234  # the gateway's Service, published on 127.0.0.1 by the kind node
# A second published NodePort for the cluster's own e2e checks, so they never
# compete with the gateway for NODE_PORT.
SELF_TEST_NODE_PORT = 31235
PUBLISHED_PORTS = (NODE_PORT, SELF_TEST_NODE_PORT)

APP = "pg-gateway"  # the application: app.kubernetes.io/part-of of every object
GATEWAY = "pg-gateway"  # Deployment and Service, and app.kubernetes.io/name of its pods
POSTGRES = "postgres"  # StatefulSet and Service, and app.kubernetes.io/name of its pods
POSTGRES_POD = f"{POSTGRES}-0"  # the StatefulSet's one pod
SECRET = "pg-gateway-secrets"  # noqa: S105 - an object name, not a value
# The Secret's key the gateway reads API_TOKENS from: `token[:role][:option=value...]`,
# admin first; what follows each token in it (scripts/deploy.sh writes the same, a test
# holds them together): the admin may have 16 requests in flight per worker, those beyond
# POOL_MAX waiting for a connection (more than the gate's load ever has in flight, which may
# all reach one worker: tests/unit/gate/test_connection_budget.py).
API_TOKENS_KEY = "api-tokens"
ADMIN_TOKEN_OPTIONS = ":name=admin:concurrency=16"  # noqa: S105 - options, not a secret
READER_TOKEN_OPTIONS = ":reader:name=reader"  # noqa: S105 - options, not a secret
GATEWAY_CONTAINER = "gateway"
POSTGRES_CONTAINER = "postgres"
ROLES_SQL_KEY = "roles.sql"  # of the ConfigMap postgres-roles-<hash> (manifests/base)
POSTGRES_SUPERUSER = "postgres"  # the StatefulSet's POSTGRES_USER: who may read every catalog
GATEWAY_PORT = 5000
# Health, readiness and metrics: the container port's name and number (OPS_PORT).
OPS_PORT_NAME = "ops"
OPS_PORT = 5001
POSTGRES_PORT = 5432
PATRONI_PORT = 8008  # Patroni's REST API on each member (components/postgres-ha)

NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# On the namespaces an e2e run creates, so the next run finds and deletes a kept one.
E2E_LABEL = "pg-gateway/e2e"
