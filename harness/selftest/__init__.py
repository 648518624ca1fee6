"""The gate's self-test: broken deployments ("mutants") that the e2e checks must catch.

A gate is worth what its red is worth. `python -m harness.selftest` (`nox -s gate_selftest`)
first runs every gateway check against the sound deployment (it must pass, or the rest means
nothing), then, for each mutant, deploys a broken copy of the rendered `kind` overlay (and,
where the defect is in the gateway, images built from a patched copy of the source) into a
fresh namespace, runs the checks that should notice and the manifest lint, and reports
caught/total.

  mutants   the catalogue, as data: the defect, how it is made, the checks that should fail
  run       scratch copies, the lint and the e2e checks against each mutant, their results
  report    the table, printed and written to artifacts/gate-selftest/report.{md,json}
  __main__  `python -m harness.selftest [--mutants NAME,...] [--list]`
"""
