"""Configuration read once from the environment.

Every value is validated at start so a typo stops the server with one line naming the
variable, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg2.extensions import parse_dsn

MIB = 1024 * 1024
# A name as PostgreSQL stores an unquoted one: lower case. A role's password comes from
# POSTGRES_PASSWORD_<ROLE> (upper-cased), which is unambiguous only for such names.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# POSTGRES_HOST_<ROLE>: where that role's login connects, if not to the gateway's host.
_ROLE_HOST = "POSTGRES_HOST_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Token:
    """What a bearer token may use. The secret is its key in `Settings.api_tokens`, never a
    field: `name` labels it in metrics and logs."""

    name: str
    role: str | None  # the login its requests run as; None: the gateway's own
    concurrency: int  # requests in flight per worker; beyond it, 429 at once
    per_client: int  # of those, from one client address


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"configuration error: {variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """The validated configuration; defaults are the documented ones."""

    # The three that hold passwords and tokens are out of the repr: a repr ends up in logs
    # and in a failed test's report.
    dsn: dict[str, str] = field(default_factory=dict, repr=False)
    api_tokens: dict[str, Token] = field(default_factory=dict, repr=False)
    # Connection parameters of each role a token maps to: its own login and password.
    role_dsns: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
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
    ops_port: int = 5001  # /healthz, /readyz, /metrics: probes and Prometheus only
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
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


def _token_entry(entry: str, index: int) -> tuple[str, str | None, dict[str, str]]:
    """`token[:role][:name=...][:concurrency=N][:per_client=N]`, strictly: a typo must not
    widen access."""
    token, *fields = entry.split(":")
    if not token or any(c.isspace() for c in token):
        raise ConfigError("API_TOKENS", "every entry needs a token without spaces")
    role, options = None, {}
    for part in fields:
        key, equals, value = part.partition("=")
        if not part:
            raise ConfigError("API_TOKENS", f"entry {index} has an empty field (no role?)")
        if equals:
            if key not in {"name", "concurrency", "per_client"} or key in options:
                raise ConfigError("API_TOKENS", f"entry {index}: unknown or repeated {key!r}")
            options[key] = value
        elif role is not None:
            raise ConfigError("API_TOKENS", f"entry {index} names more than one role")
        elif not _NAME.match(part):
            hint = f" (did you mean {part.lower()!r}?)" if _NAME.match(part.lower()) else ""
            raise ConfigError(
                "API_TOKENS", f"role {part!r} is not a lower-case PostgreSQL login name{hint}"
            )
        else:
            role = part
    return token, role, options


def _count(options: dict[str, str], key: str, default: int, index: int) -> int:
    raw = options.get(key, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ConfigError("API_TOKENS", f"entry {index}: {key} must be 1 to 10000, got {raw!r}")
    return int(raw)


def _tokens(env: Mapping[str, str], own_login: str, pool_max: int) -> dict[str, Token]:
    """Each entry's token and limits. A token's default concurrency leaves one of its login's
    POOL_MAX connections to every other token of that login."""
    entries = []
    for index, entry in enumerate(
        (e.strip() for e in env.get("API_TOKENS", "").split(",") if e.strip()), start=1
    ):
        entries.append((index, *_token_entry(entry, index)))
    logins = [role or own_login for _, _, role, _ in entries]
    tokens: dict[str, Token] = {}
    for (index, token, role, options), login in zip(entries, logins, strict=True):
        if token in tokens:
            raise ConfigError("API_TOKENS", "a token is listed twice")
        name = options.get("name", f"token-{index}")
        if not _TOKEN_NAME.match(name) or name in {t.name for t in tokens.values()}:
            raise ConfigError("API_TOKENS", f"entry {index}: name {name!r} is invalid or taken")
        sharing = logins.count(login)
        concurrency = _count(options, "concurrency", max(1, pool_max - sharing + 1), index)
        per_client = _count(options, "per_client", concurrency, index)
        if per_client > concurrency:
            raise ConfigError("API_TOKENS", f"entry {index}: per_client exceeds concurrency")
        tokens[token] = Token(name, role, concurrency, per_client)
    return tokens


def _role_dsns(
    env: Mapping[str, str], dsn: dict[str, str], tokens: dict[str, Token]
) -> dict[str, dict[str, str]]:
    """Each mapped role logs in as itself, with its own password, to the same database."""
    role_dsns: dict[str, dict[str, str]] = {}
    roles = {token.role for token in tokens.values() if token.role}
    for role in sorted(roles - {dsn.get("user")}):
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


def _role_hosts(
    env: Mapping[str, str],
    role_dsns: dict[str, dict[str, str]],
    read_only_roles: frozenset[str],
) -> dict[str, dict[str, str]]:
    """POSTGRES_HOST_<ROLE> (host or host:port): a read-only role may read from other
    servers (the replicas)."""
    moved = dict(role_dsns)
    for variable in sorted(v for v in env if v.startswith(_ROLE_HOST)):
        role, host = variable.removeprefix(_ROLE_HOST).lower(), env[variable].strip()
        if role not in role_dsns:
            raise ConfigError(
                variable, f"{role!r} is not a role of API_TOKENS with a login of its own"
            )
        if role not in read_only_roles:
            raise ConfigError(
                variable,
                f"only a role of READ_ONLY_ROLES may use other servers ({role!r} is not): "
                "a standby refuses writes, and the gateway sends a login that writes to the "
                "primary only",
            )
        name, _, port = host.partition(":")
        if not name or any(c.isspace() for c in host) or (port and not _is_port(port)):
            raise ConfigError(variable, f"must be host or host:port, got {host!r}")
        moved[role] = {**role_dsns[role], "host": name, **({"port": port} if port else {})}
    return moved


def _is_port(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


def _schema(env: Mapping[str, str]) -> str:
    schema = env.get("POSTGRES_SCHEMA", "app").strip()
    if not _NAME.match(schema):
        raise ConfigError(
            "POSTGRES_SCHEMA", f"must be a lower-case PostgreSQL name, got {schema!r}"
        )
    return schema


def _tls_files(env: Mapping[str, str]) -> dict[str, str | None]:
    """Both or neither: the data port then speaks TLS only."""
    cert = env.get("TLS_CERT_FILE", "").strip() or None
    key = env.get("TLS_KEY_FILE", "").strip() or None
    if bool(cert) != bool(key):
        raise ConfigError("TLS_CERT_FILE" if key else "TLS_KEY_FILE", "set both or neither")
    for variable, path in (("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(variable, f"no such file: {path}")
    return {"tls_cert_file": cert, "tls_key_file": key}


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
    tokens = _tokens(env, dsn.get("user", ""), pool_max)
    role_dsns = _role_dsns(env, dsn, tokens)
    read_only_roles = _read_only_roles(env, role_dsns)
    port = _int(env, "PORT", 5000, 1, 65535)
    ops_port = _int(env, "OPS_PORT", 5001, 1, 65535)
    if ops_port == port:
        raise ConfigError("OPS_PORT", f"must differ from PORT ({port})")
    return Settings(
        dsn=dsn,
        api_tokens=tokens,
        role_dsns=_role_hosts(env, role_dsns, read_only_roles),
        read_only=_bool(env, "READ_ONLY"),
        read_only_roles=read_only_roles,
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
        port=port,
        ops_port=ops_port,
        **_tls_files(env),
        workers=_int(env, "WORKERS", 2, 1, 64),
        worker_connections=_int(env, "WORKER_CONNECTIONS", 100, 1, 10_000),
        graceful_timeout_s=_int(env, "GRACEFUL_TIMEOUT_S", 30, 1, 3600),
        body_timeout_s=_int(env, "BODY_TIMEOUT_S", 10, 1, 3600),
        stream_stall_s=_int(env, "STREAM_STALL_S", 30, 1, 3600),
        stream_max_s=_int(env, "STREAM_MAX_S", 300, 1, 24 * 3600),
        log_level=log_level,
    )
