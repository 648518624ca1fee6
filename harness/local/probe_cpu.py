"""The e2e load probe's own CPU per request, against a local gateway (no cluster).

The probe runs in this process and the gateway and PostgreSQL in others, so this process's
CPU time (getrusage) is the probe's: what it takes from a 2-core runner beside the cluster
(docs/gate.md, "When a run cannot judge"). Run in the test environment `nox -s unit` makes:
`.nox/unit/bin/python -m harness.local.probe_cpu --seconds 20 --clients keep-alive`.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import tempfile
import time
from pathlib import Path

from harness.e2e.availability import ClientKind, Clients, LoadProbe
from harness.local.deployed import local_server
from harness.local.postgres import free_port
from harness.local.provision import Logins, provision
from harness.local.serve import START_TIMEOUT_S, start_gateway, stop_gateway, wait_healthy

RATE_PER_CLIENT = 25.0  # as the e2e checks' clients
CLIENTS = 8


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(kind: ClientKind, seconds: float) -> str:
    """One line: requests, rate, failures and the probe's CPU per request."""
    with tempfile.TemporaryDirectory() as scratch, open(os.devnull, "w") as quiet:
        server = local_server(Path(scratch) / "pgdata")
        server.start()
        logins = Logins()
        provision(server, logins)
        ports = (free_port(), free_port())
        token = secrets.token_urlsafe(24)
        env = {"API_TOKENS": f"{token}:name=admin:concurrency=10", "WORKERS": "2"}
        gateway = start_gateway(logins.gateway_dsn(server), "127.0.0.1", ports, env, quiet)
        try:
            wait_healthy(f"http://127.0.0.1:{ports[1]}/healthz", gateway, START_TIMEOUT_S)
            probe = LoadProbe(
                "127.0.0.1", ports[0], token, (Clients(kind, CLIENTS, RATE_PER_CLIENT),)
            )
            cpu_before, started = cpu_seconds(), time.monotonic()
            probe.start()
            time.sleep(seconds)
            probe.stop()
            cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - started
        finally:
            stop_gateway(gateway)
            server.stop()
    count = len(probe.samples)
    return (
        f"{kind}: {count} requests in {wall:.1f} s ({count / wall:.0f}/s of "
        f"{probe.rate_per_s:.0f}/s asked), {len(probe.failures)} failed; probe CPU {cpu:.2f} s "
        f"= {cpu / max(count, 1) * 1000:.3f} ms a request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--clients",
        choices=[ClientKind.KEEP_ALIVE, ClientKind.NEW_CONNECTION],
        default=ClientKind.KEEP_ALIVE,
    )
    arguments = parser.parse_args()
    print(measure(ClientKind(arguments.clients), arguments.seconds))


if __name__ == "__main__":
    main()
