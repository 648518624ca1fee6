"""A copy of what the e2e run writes to the terminal, kept in a file as it goes.

The secret scan reads files; the terminal is where a CI log comes from (a check's print, a
step's message, a child process's output, pytest's own reports), so it is copied at the
file-descriptor level: standard output and error go through a pipe each, pumped to where
they went before and to one file. pytest's descriptor capture would put its own saved
descriptors back between checks, bypassing the copy (seen: an empty copy), so the plugin
refuses any capture but `-s` (as nox, tox and the self-test run the checks) or `tee-sys`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import BinaryIO

STREAMS = (1, 2)  # standard output and error
CAPTURES_SEEN = ("no", "tee-sys")  # pytest's --capture modes that leave the descriptors alone
JOIN_S = 5.0  # a child that outlives the run may hold a pipe open: its copy is not awaited


class TerminalCopy:
    """While started, everything written to file descriptors 1 and 2 also goes to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pumps: list[tuple[int, int, threading.Thread]] = []  # fd, its terminal, pump
        self._file: BinaryIO | None = None

    def start(self) -> None:
        _flush()
        self._file = self.path.open("wb")
        for fd in STREAMS:
            read, write = os.pipe()
            terminal = os.dup(fd)
            os.dup2(write, fd)
            os.close(write)
            pump = threading.Thread(target=self._pump, args=(read, terminal), daemon=True)
            pump.start()
            self._pumps.append((fd, terminal, pump))

    def stop(self) -> None:
        """Back to the terminal alone; the file holds everything written until now."""
        _flush()
        for fd, terminal, _ in self._pumps:
            os.dup2(terminal, fd)  # the pipe's last writer here is gone: its pump sees the end
        for _, terminal, pump in self._pumps:
            pump.join(JOIN_S)
            if not pump.is_alive():
                os.close(terminal)
        self._pumps = []
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _pump(self, read: int, terminal: int) -> None:
        """Until the pipe ends: each chunk to the terminal, then to the file. A terminal that
        went away must not stop the draining, or every writer would block on a full pipe."""
        while chunk := os.read(read, 65536):
            with contextlib.suppress(OSError):
                _write_all(terminal, chunk)
            with self._lock:
                if self._file is not None:
                    self._file.write(chunk)
                    self._file.flush()
        os.close(read)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
