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
