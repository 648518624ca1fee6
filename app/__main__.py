"""`python -m app`: start the production server on 0.0.0.0:$PORT.

When the metrics directory is not set yet, the process re-executes itself once with it set
(app.metrics.run_with_multiprocess_files says why).
"""

from __future__ import annotations

import os
import sys

from app.metrics import run_with_multiprocess_files
from app.server import GatewayServer, serve
from app.settings import ConfigError, load_settings


def main() -> int:
    run_with_multiprocess_files("app")
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    serve(GatewayServer(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
