"""`python -m app`: start the production server on 0.0.0.0:$PORT.

prometheus-client picks its multi-process mode when first imported, which importing the
`app` package already did; so when the metrics directory is not set yet, the process
re-executes itself once with it set (same PID, so it stays PID 1 in a container).
"""

from __future__ import annotations

import os
import sys
import tempfile

from app.server import serve
from app.settings import ConfigError, load_settings


def main() -> int:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="pg-gateway-metrics-")
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        os.execve(sys.executable, [sys.executable, "-m", "app", *sys.argv[1:]], env)  # noqa: S606
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
