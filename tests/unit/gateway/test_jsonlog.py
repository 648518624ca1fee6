"""The JSON log line: its time to the millisecond in UTC, and the request's fields; the
access line, written apart from logging, is the line logging would write."""

from __future__ import annotations

import io
import json
import logging
import sys
import time

import pytest

from app.jsonlog import JsonFormatter, access_line


def _record(created: float, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "request", (), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(fields)
    return record


def test_each_line_has_its_own_time_also_within_one_second() -> None:
    formatter = JsonFormatter()
    second = 1_764_971_256  # 2025-12-05T21:47:36Z
    times = [second + 0.125, second + 0.875, second + 1.0625, second - 3 + 0.5]  # exact in binary
    lines = [json.loads(formatter.format(_record(created))) for created in times]
    stamp = "%Y-%m-%dT%H:%M:%S"
    expected = [
        time.strftime(stamp, time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
        for created in times
    ]
    assert [line["time"] for line in lines] == expected
    assert lines[0]["time"] == "2025-12-05T21:47:36.125Z"


def test_the_request_fields_are_in_the_line_and_nothing_unset() -> None:
    fields = {"request_id": "ab12", "method": "POST", "path": "/query", "status": 200}
    line = json.loads(JsonFormatter().format(_record(1.0, **fields, sqlstate=None)))
    assert line == {
        "time": "1970-01-01T00:00:01.000Z",
        "level": "info",
        "logger": "app",
        "message": "request",
        **fields,
    }


def test_the_access_line_is_the_line_logging_would_write(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("app.test-access-info")  # a logger of these tests alone
    logger.setLevel(logging.INFO)
    fields = {"request_id": "ab12", "method": "POST", "path": "/query", "status": 201}
    fields |= {"sqlstate": None, "duration_ms": 1.5}
    created = 1_764_971_256.625
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "request", (), None, None)
    record.__dict__.update(fields)
    record.created, record.msecs = created, 625.0
    monkeypatch.setattr(time, "time", lambda: created)
    access_line(logger, fields)
    assert capsys.readouterr().err == JsonFormatter().format(record) + "\n"


def test_no_access_line_below_the_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("app.test-access-warning")
    logger.setLevel(logging.WARNING)
    access_line(logger, {"request_id": "ab12"})
    assert capsys.readouterr().err == ""


def test_a_stderr_that_is_gone_loses_the_access_line_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("app.test-access-gone")
    logger.setLevel(logging.INFO)
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    access_line(logger, {"request_id": "ab12"})  # no exception reaches the answer's close
