"""Configuration read once from the environment.

Every value is validated at start so a typo stops the server with one line naming the
variable, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg2.extensions import parse_dsn

MIB = 1024 * 1024
# A name as PostgreSQL stores an unquoted one: lower case. A role's password comes from
# POSTGRES_PASSWORD_<ROLE> (upper-cased), which is unambiguous only for such names.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"configuration error: {variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """The validated configuration; defaults are the documented ones."""

    dsn: dict[str, str] = field(default_factory=dict)
    api_tokens: dict[str, str | None] = field(default_factory=dict)
    # Connection parameters of each role a token maps to: its own login and password.
    role_dsns: dict[str, dict[str, str]] = field(default_factory=dict)
    read_only: bool = False
    # Roles whose tokens get read-only transactions, opened as READ_ONLY opens them.
    read_only_roles: frozenset[str] = frozenset()
    # The schema the app's objects live in: every connection's pinned search_path.
    schema: str = "app"
    statement_timeout_ms: int = 5000
    max_statement_timeout_ms: int = 60000
    max_rows: int = 10000
    max_result_bytes: int = 10 * MIB
    max_body_bytes: int = 1 * MIB
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout_ms: int = 5000
    pool_max_age_s: int = 300
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen beyond loopback
    port: int = 5000
    workers: int = 2
    worker_connections: int = 100
    graceful_timeout_s: int = 30
    body_timeout_s: int = 10
    stream_stall_s: int = 30
    stream_max_s: int = 300
    log_level: str = "INFO"

    @property
    def auth_required(self) -> bool:
        return bool(self.api_tokens)

    def role_is_read_only(self, role: str | None) -> bool:
        return self.read_only or (role is not None and role in self.read_only_roles)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _dsn(env: Mapping[str, str]) -> dict[str, str]:
    url = env.get("DATABASE_URL", "").strip()
    if url:
        try:
            dsn = parse_dsn(url)
        except Exception:
            # The message of parse_dsn may echo the URL, password included.
            raise ConfigError("DATABASE_URL", "is not a valid PostgreSQL connection URL") from None
        ports = dsn.get("port", "5432").split(",")
        if not all(port.isdigit() and 0 < int(port) < 65536 for port in ports):
            raise ConfigError("DATABASE_URL", "has a port that is not a number from 1 to 65535")
        return dsn
    port = _int(env, "POSTGRES_PORT", 5432, 1, 65535)
    dsn = {
        "host": env.get("POSTGRES_HOST", "localhost"),
        "port": str(port),
        "user": env.get("POSTGRES_USER", "postgres"),
        "dbname": env.get("POSTGRES_DB", "postgres"),
    }
    password = env.get("POSTGRES_PASSWORD")
    if password:
        dsn["password"] = password
    return dsn


def _tokens(env: Mapping[str, str]) -> dict[str, str | None]:
    """Parse `token` or `token:role` entries strictly: a typo must not widen access."""
    tokens: dict[str, str | None] = {}
    for entry in env.get("API_TOKENS", "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        token, colon, role = entry.partition(":")
        if not token or any(c.isspace() for c in token):
            raise ConfigError("API_TOKENS", "every entry needs a token without spaces")
        if colon and not role:
            raise ConfigError("API_TOKENS", "the entry for a token ends in ':' with no role")
        if role and not _NAME.match(role):
            hint = f" (did you mean {role.lower()!r}?)" if _NAME.match(role.lower()) else ""
            raise ConfigError(
                "API_TOKENS",
                f"role {role!r} is not a lower-case PostgreSQL login name{hint}",
            )
        if token in tokens:
            raise ConfigError("API_TOKENS", "a token is listed twice")
        tokens[token] = role or None
    return tokens


def _role_dsns(
    env: Mapping[str, str], dsn: dict[str, str], tokens: dict[str, str | None]
) -> dict[str, dict[str, str]]:
    """Each mapped role logs in as itself, with its own password, to the same database."""
    role_dsns: dict[str, dict[str, str]] = {}
    for role in sorted({role for role in tokens.values() if role and role != dsn.get("user")}):
        variable = f"POSTGRES_PASSWORD_{role.upper()}"
        password = env.get(variable, "")
        if not password:
            raise ConfigError(
                "API_TOKENS",
                f"role {role!r} logs in with its own password: set {variable}",
            )
        role_dsns[role] = {**dsn, "user": role, "password": password}
    return role_dsns


def _read_only_roles(
    env: Mapping[str, str], role_dsns: dict[str, dict[str, str]]
) -> frozenset[str]:
    """Roles named here must be roles a token logs in as: a typo must not leave one writable."""
    roles = frozenset(r.strip() for r in env.get("READ_ONLY_ROLES", "").split(",") if r.strip())
    for role in sorted(roles - set(role_dsns)):
        raise ConfigError(
            "READ_ONLY_ROLES",
            f"{role!r} is not a role of API_TOKENS with a login of its own "
            "(for the gateway's own login, set READ_ONLY)",
        )
    return roles


def _schema(env: Mapping[str, str]) -> str:
    schema = env.get("POSTGRES_SCHEMA", "app").strip()
    if not _NAME.match(schema):
        raise ConfigError(
            "POSTGRES_SCHEMA", f"must be a lower-case PostgreSQL name, got {schema!r}"
        )
    return schema


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build `Settings` from environment-like mapping, raising `ConfigError` on bad input."""
    statement_timeout = _int(env, "STATEMENT_TIMEOUT_MS", 5000, 1, 24 * 3600 * 1000)
    max_statement_timeout = _int(env, "MAX_STATEMENT_TIMEOUT_MS", 60000, 1, 24 * 3600 * 1000)
    if statement_timeout > max_statement_timeout:
        raise ConfigError(
            "STATEMENT_TIMEOUT_MS",
            f"{statement_timeout} exceeds MAX_STATEMENT_TIMEOUT_MS ({max_statement_timeout})",
        )
    pool_min = _int(env, "POOL_MIN", 1, 0, 1000)
    pool_max = _int(env, "POOL_MAX", 10, 1, 1000)
    if pool_min > pool_max:
        raise ConfigError("POOL_MIN", f"{pool_min} exceeds POOL_MAX ({pool_max})")
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    dsn = _dsn(env)
    tokens = _tokens(env)
    role_dsns = _role_dsns(env, dsn, tokens)
    return Settings(
        dsn=dsn,
        api_tokens=tokens,
        role_dsns=role_dsns,
        read_only=_bool(env, "READ_ONLY"),
        read_only_roles=_read_only_roles(env, role_dsns),
        schema=_schema(env),
        statement_timeout_ms=statement_timeout,
        max_statement_timeout_ms=max_statement_timeout,
        max_rows=_int(env, "MAX_ROWS", 10000, 1, 100_000_000),
        max_result_bytes=_int(env, "MAX_RESULT_BYTES", 10 * MIB, 1024, 1024 * MIB),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1 * MIB, 1024, 1024 * MIB),
        pool_min=pool_min,
        pool_max=pool_max,
        pool_timeout_ms=_int(env, "POOL_TIMEOUT_MS", 5000, 1, 600_000),
        pool_max_age_s=_int(env, "POOL_MAX_AGE_S", 300, 1, 24 * 3600),
        host=env.get("HOST", "0.0.0.0").strip() or "0.0.0.0",  # noqa: S104
        port=_int(env, "PORT", 5000, 1, 65535),
        workers=_int(env, "WORKERS", 2, 1, 64),
        worker_connections=_int(env, "WORKER_CONNECTIONS", 100, 1, 10_000),
        graceful_timeout_s=_int(env, "GRACEFUL_TIMEOUT_S", 30, 1, 3600),
        body_timeout_s=_int(env, "BODY_TIMEOUT_S", 10, 1, 3600),
        stream_stall_s=_int(env, "STREAM_STALL_S", 30, 1, 3600),
        stream_max_s=_int(env, "STREAM_MAX_S", 300, 1, 24 * 3600),
        log_level=log_level,
    )
