"""The manifests as the gate sees them: rendered one way, linted, checked against policy.

render     `kubectl kustomize` of a directory: what the e2e deploy applies and the lint checks
lint       strict offline schema validation, the policy, kube-score: `python -m harness.manifests`
policy     the project's rules over rendered objects (pure functions)
kubescore  kube-score, pinned, over each rendered overlay: the general good practice
"""
