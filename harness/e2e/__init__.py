"""The e2e checks' library: deploy the gateway, wait on it, measure it, explain a failure.

plugin         the pytest plugin (`-p harness.e2e.plugin`): fixtures, options, diagnostics hook,
               a wall time per check
deploy         namespace, Secret, the rendered kustomization applied (fresh, or over an earlier
               release), waits until serving
upgrade        the previous release's tree and the upgrade check's own NodePort
writers        threads inserting unique ids, each answer and its time recorded, for what was
               lost and how long writes stopped
replicated     the replicated cluster's members and their roles (read, watched), a switchover
kill           SIGKILL to a pod's processes from its node (a crash, an OOM kill)
privileges     the logins' privileges from the catalogs against what roles.sql grants
availability   a realistic client load and a watch on the Deployment, for rollouts and drains
drain          `kubectl drain` in a thread, its events parsed; uncordon; the worker nodes
probeclient    the load's HTTP/1.1 client: plain sockets, httptools' parser
diagnostics    describe, logs, events, endpoints, kind logs saved after a failure
terminal       a copy of the run's terminal output, for the secret scan
"""
