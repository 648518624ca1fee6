"""One JSON object per log line, so log pipelines need no parsing rules.

SQL text, parameters and results are never passed to the logger by the gateway. Every line
goes through logging (`JsonFormatter`) but the access line of an answered request, which
`access_line` writes to stderr itself in the same form: through a record, the handlers and
their locks it took about 35 us of a request's CPU, against 13 us written at once
(docs/benchmarks.md, "Per-request costs").
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

from app.seconds import EverySecond

# Attributes a caller may attach with `extra=` that belong in the JSON line.
_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "sqlstate")


_second = EverySecond(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))


def _stamp(created: float) -> str:
    """A line's time, to the millisecond in UTC."""
    second = int(created)
    return f"{_second(second)}.{int((created - second) * 1000):03d}Z"


def _line(created: float, level: str, logger: str, message: str, fields: Mapping[str, Any]) -> dict:
    line: dict[str, Any] = {
        "time": _stamp(created),
        "level": level,
        "logger": logger,
        "message": message,
    }
    for name in _FIELDS:
        value = fields.get(name)
        if value is not None:
            line[name] = value
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            record.__dict__,
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def access_line(logger: logging.Logger, fields: Mapping[str, Any]) -> None:
    """The line `logger.info("request", extra=fields)` would give, written to stderr at
    once; nothing when the logger is not enabled for INFO (LOG_LEVEL)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    line = _line(time.time(), "info", logger.name, "request", fields)
    # A stream that is gone (a closed or broken stderr) loses the line, as logging's handler
    # would: there is nowhere to report it, and the answer has been sent.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(orjson.dumps(line).decode() + "\n")
        sys.stderr.flush()


def lean_records() -> None:
    """Each record skips what no JSON line shows: the caller's source line, the thread, the
    process (a getpid syscall a line). The logging HOWTO's "Optimization" names these."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the app and for gunicorn's own loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }
