"""The e2e checks' library: deploy the gateway, wait on it, measure it, explain a failure.

plugin         the pytest plugin (`-p harness.e2e.plugin`): fixtures, options, diagnostics hook
deploy         namespace, Secret, the rendered `kind` overlay applied, waits until serving
kube           typed waits on Kubernetes objects, each one watch with one deadline
availability   a steady client load and a watch on the Deployment, for rollouts
diagnostics    describe, logs, events, endpoints, kind logs saved after a failure
"""
