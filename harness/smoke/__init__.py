"""The smoke checks' library: a deployed gateway checked where it runs, kind or kops alike.

plugin   the pytest plugin (`-p harness.smoke.plugin`): --kubeconfig, --namespace, --url,
         --wait, the fixtures of tests/smoke/ and the one-screen summary
target   what the checks talk to: the gateway's URL (found from its Service), the admin
         token (read from its Secret), the live objects the manifest policy is applied to
"""
