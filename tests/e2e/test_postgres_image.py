"""The PostgreSQL image keeps the official postgres image's contract.

Offline this is the image built from Debian's postgresql-15; where a registry
answers it is the official postgres:15 itself, so one test pins one contract.
Runs with plain docker (no cluster): environment-driven initialisation, init
scripts run once, scram-sha-256 over TCP, the server as UID 999 and PID 1,
data kept across restarts, and a clean shutdown on SIGTERM.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import paths

READY_TIMEOUT = 60.0
USER, PASSWORD, DATABASE = "app", "e2e-secret", "appdb"

SCHEMA_SQL = "create table seeded (note text); insert into seeded values ('from-sql');\n"
# Not executable, so the entrypoint sources it, as the official image does.
EXTRA_SH = (
    'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" '
    "-c \"insert into seeded values ('from-sh')\"\n"
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class Postgres:
    container: str

    def psql(self, sql: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        """psql over TCP inside the container, so host-based (scram) auth applies."""
        return docker(
            "exec", "-e", f"PGPASSWORD={password}", self.container,
            "psql", "-h", "127.0.0.1", "-U", USER, "-d", DATABASE, "-tAc", sql,
            check=False,
        )  # fmt: skip

    def query(self, sql: str) -> str:
        result = self.psql(sql)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def wait_ready(self) -> None:
        """pg_isready over TCP: during init the server listens on its socket only."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            ready = docker(
                "exec", self.container, "pg_isready", "-h", "127.0.0.1", "-U", USER, "-d", DATABASE,
                check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.5)
        logs = docker("logs", self.container, check=False)
        raise AssertionError(f"postgres not ready in {READY_TIMEOUT}s:\n{logs.stdout}{logs.stderr}")

    def logs(self) -> str:
        result = docker("logs", self.container)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def postgres(postgres_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    init_dir = tmp_path_factory.mktemp("initdb")
    (init_dir / "01-schema.sql").write_text(SCHEMA_SQL)
    (init_dir / "02-extra.sh").write_text(EXTRA_SH)
    for path in (init_dir, *init_dir.iterdir()):  # the server user (999) must read them
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"e2e-postgres-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name,
        "-e", f"POSTGRES_PASSWORD={PASSWORD}", "-e", f"POSTGRES_USER={USER}",
        "-e", f"POSTGRES_DB={DATABASE}",
        "-v", f"{Path(init_dir)}:/docker-entrypoint-initdb.d:ro",
        "-v", f"{name}:/var/lib/postgresql/data",
        postgres_image,
    )  # fmt: skip
    server = Postgres(name)
    try:
        server.wait_ready()
        yield server
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", name, check=False)


def test_initialises_database_and_user_from_env_and_runs_init_scripts(postgres: Postgres) -> None:
    assert postgres.query("select current_user, current_database()") == f"{USER}|{DATABASE}"
    assert postgres.query("select string_agg(note, ',' order by note) from seeded") == (
        "from-sh,from-sql"
    )


def test_requires_the_password_over_tcp_with_scram(postgres: Postgres) -> None:
    wrong = postgres.psql("select 1", password="not-the-password")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    assert postgres.query("show password_encryption") == "scram-sha-256"
    rules = postgres.query("select auth_method from pg_hba_file_rules where address = 'all'")
    assert rules == "scram-sha-256"


def test_server_is_pid_1_as_uid_999_listening_on_all_addresses(postgres: Postgres) -> None:
    status = docker("exec", postgres.container, "cat", "/proc/1/status").stdout
    assert "Name:\tpostgres" in status
    assert any(line.split()[:2] == ["Uid:", "999"] for line in status.splitlines()), status
    assert postgres.query("show listen_addresses") == "*"


def test_keeps_data_across_restarts_and_shuts_down_cleanly_on_sigterm(postgres: Postgres) -> None:
    postgres.query("insert into seeded values ('before-restart')")

    docker("restart", postgres.container)  # the image's stop signal (SIGINT), then start
    postgres.wait_ready()
    assert postgres.query("select count(*) from seeded where note = 'before-restart'") == "1"
    # Init scripts ran once: a second run would have failed on "create table".
    assert postgres.logs().count("PostgreSQL init process complete") == 1

    docker("kill", "--signal", "TERM", postgres.container)
    exit_code = docker("wait", postgres.container).stdout.strip()
    assert exit_code == "0", postgres.logs()[-2000:]
    assert postgres.logs().rstrip().endswith("database system is shut down")

    docker("start", postgres.container)
    postgres.wait_ready()
    assert postgres.query("select count(*) from seeded") == "3"


def test_carries_the_patroni_its_lock_pins(postgres_image: str) -> None:
    lock = (paths.IMAGES_DIR / "postgres" / "patroni.lock").read_text()
    (pinned,) = re.findall(r"^patroni==(\S+)", lock, flags=re.MULTILINE)
    shown = docker("run", "--rm", "--entrypoint", "patroni", postgres_image, "--version")
    assert shown.stdout.split() == ["patroni", pinned], shown.stdout + shown.stderr
