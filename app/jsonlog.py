"""One JSON object per log line, so log pipelines need no parsing rules.

SQL text, parameters and results are never passed to the logger by the gateway.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

# Attributes a caller may attach with `extra=` that belong in the JSON line.
_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "sqlstate")


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second, self._second_text = -1, ""  # the last line's second, formatted

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second, self._second_text = second, text
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


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
