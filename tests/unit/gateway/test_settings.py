"""Settings from the environment (design: "Configuration")."""

from __future__ import annotations

import pytest

from app.settings import MIB, ConfigError, Settings, Token, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.dsn == {
        "host": "localhost",
        "port": "5432",
        "user": "postgres",
        "dbname": "postgres",
    }
    assert settings.api_tokens == {}
    assert settings.auth_required is False
    assert settings.read_only is False
    assert settings.statement_timeout_ms == 5000
    assert settings.max_statement_timeout_ms == 60000
    assert settings.max_rows == 10000
    assert settings.max_result_bytes == 10 * MIB
    assert settings.max_body_bytes == 1 * MIB
    assert settings.pool_min == 1
    assert settings.pool_max == 10
    assert settings.port == 5000
    assert settings.log_level == "INFO"


def test_defaults_match_the_dataclass_defaults() -> None:
    loaded, plain = load_settings({}), Settings()
    for name in ("statement_timeout_ms", "max_statement_timeout_ms", "max_rows", "port"):
        assert getattr(loaded, name) == getattr(plain, name)
    assert (loaded.max_result_bytes, loaded.max_body_bytes) == (
        plain.max_result_bytes,
        plain.max_body_bytes,
    )
    assert (loaded.pool_min, loaded.pool_max, loaded.read_only) == (
        plain.pool_min,
        plain.pool_max,
        plain.read_only,
    )


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        ("STATEMENT_TIMEOUT_MS", "250", "statement_timeout_ms", 250),
        ("MAX_STATEMENT_TIMEOUT_MS", " 120000 ", "max_statement_timeout_ms", 120000),
        ("MAX_ROWS", "5", "max_rows", 5),
        ("MAX_RESULT_BYTES", "2048", "max_result_bytes", 2048),
        ("MAX_BODY_BYTES", "4096", "max_body_bytes", 4096),
        ("POOL_MIN", "0", "pool_min", 0),
        ("POOL_MAX", "50", "pool_max", 50),
        ("PORT", "8080", "port", 8080),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("POSTGRES_SCHEMA", "tenant_a", "schema", "tenant_a"),
        ("POOL_MAX_AGE_S", "60", "pool_max_age_s", 60),
        ("STREAM_MAX_S", "900", "stream_max_s", 900),
        ("MAX_ROWS", "", "max_rows", 10000),
    ],
)
def test_valid_values(variable: str, raw: str, attribute: str, expected: object) -> None:
    assert getattr(load_settings({variable: raw}), attribute) == expected


INVALID = [
    ("STATEMENT_TIMEOUT_MS", "abc"),
    ("STATEMENT_TIMEOUT_MS", "1.5"),
    ("STATEMENT_TIMEOUT_MS", "0"),
    ("STATEMENT_TIMEOUT_MS", "-1"),
    ("MAX_STATEMENT_TIMEOUT_MS", "soon"),
    ("MAX_STATEMENT_TIMEOUT_MS", "0"),
    ("MAX_ROWS", "ten"),
    ("MAX_ROWS", "0"),
    ("MAX_RESULT_BYTES", "10MiB"),
    ("MAX_RESULT_BYTES", "0"),
    ("MAX_BODY_BYTES", "1k"),
    ("MAX_BODY_BYTES", "-5"),
    ("POOL_MIN", "-1"),
    ("POOL_MIN", "one"),
    ("POOL_MAX", "0"),
    ("POOL_MAX", "x"),
    ("POOL_TIMEOUT_MS", "0"),
    ("PORT", "0"),
    ("PORT", "65536"),
    ("PORT", "http"),
    ("POSTGRES_PORT", "0"),
    ("POSTGRES_PORT", "99999"),
    ("POSTGRES_PORT", "pg"),
    ("WORKERS", "0"),
    ("WORKER_CONNECTIONS", "many"),
    ("GRACEFUL_TIMEOUT_S", "0"),
    ("READ_ONLY", "maybe"),
    ("READ_ONLY", "2"),
    ("API_TOKENS", "tok:bad-role"),
    ("API_TOKENS", "tok:1role"),
    ("API_TOKENS", "tok:role:extra"),
    ("API_TOKENS", ":reader"),
    ("API_TOKENS", "good,to ken"),
    # Strict: an empty role would give full access, a repeated token would keep the last
    # entry, a role in capitals is not the login PostgreSQL stores, and a role without its
    # own password cannot log in as itself.
    ("API_TOKENS", "t:"),
    ("API_TOKENS", "t:reader,t"),
    ("API_TOKENS", "t:READER"),
    ("API_TOKENS", "t:reader"),
    ("BODY_TIMEOUT_S", "0"),
    ("STREAM_STALL_S", "soon"),
    ("DATABASE_URL", "not a dsn"),
    ("DATABASE_URL", "postgresql://u:pw@h/db?bogus=1"),
    ("DATABASE_URL", "postgresql://u:pw@h:notaport/db"),
    ("LOG_LEVEL", "verbose"),
    ("POSTGRES_SCHEMA", "App"),
    ("POSTGRES_SCHEMA", "app; drop"),
    ("POOL_MAX_AGE_S", "0"),
    ("STREAM_MAX_S", "forever"),
    # A role no token logs in as: a typo must not leave the intended one writable.
    ("READ_ONLY_ROLES", "raeder"),
    ("LOG_LEVEL", "TRACE"),
]


@pytest.mark.parametrize(("variable", "raw"), INVALID)
def test_invalid_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: raw})
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert "\n" not in str(caught.value), "one clear line"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"POOL_MIN": "5", "POOL_MAX": "2"}, "POOL_MIN"),
        ({"STATEMENT_TIMEOUT_MS": "70000"}, "STATEMENT_TIMEOUT_MS"),
        (
            {"STATEMENT_TIMEOUT_MS": "2000", "MAX_STATEMENT_TIMEOUT_MS": "1000"},
            "STATEMENT_TIMEOUT_MS",
        ),
    ],
)
def test_inconsistent_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_equal_bounds_are_fine() -> None:
    settings = load_settings(
        {
            "POOL_MIN": "3",
            "POOL_MAX": "3",
            "STATEMENT_TIMEOUT_MS": "10",
            "MAX_STATEMENT_TIMEOUT_MS": "10",
        }
    )
    assert (settings.pool_min, settings.pool_max, settings.statement_timeout_ms) == (3, 3, 10)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_read_only_true(raw: str) -> None:
    assert load_settings({"READ_ONLY": raw}).read_only is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_read_only_false(raw: str) -> None:
    assert load_settings({"READ_ONLY": raw}).read_only is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        (" , ,", {}),
        ("s3cret", {"s3cret": None}),
        ("s3cret:reader", {"s3cret": "reader"}),
        ("a, b:reader ,,c", {"a": None, "b": "reader", "c": None}),
        ("t1:role_ro,t2:writer_1", {"t1": "role_ro", "t2": "writer_1"}),
        ("t1:postgres", {"t1": "postgres"}),  # the gateway's own login: no second password
    ],
)
def test_api_tokens_parsing(raw: str, expected: dict[str, str | None]) -> None:
    passwords = {f"POSTGRES_PASSWORD_{r.upper()}": "pw" for r in expected.values() if r}
    settings = load_settings({"API_TOKENS": raw, **passwords})
    assert {secret: token.role for secret, token in settings.api_tokens.items()} == expected
    assert settings.auth_required is bool(expected)


def test_a_tokens_name_and_shares() -> None:
    settings = load_settings(
        {
            "POOL_MAX": "6",
            "API_TOKENS": "a, b:reader:name=reports:concurrency=4:per_client=2, c:reader",
            "POSTGRES_PASSWORD_READER": "pw",
        }
    )
    admin, reports, other = settings.api_tokens.values()
    # Alone on its login, a token may use all of its pool; two tokens of `reader` leave each
    # other a connection.
    assert admin == Token("token-1", None, 6, 6)
    assert reports == Token("reports", "reader", 4, 2)
    assert other == Token("token-3", "reader", 5, 5)
    assert "b" not in repr(settings.api_tokens["b"]), "the secret is not in a token's repr"


@pytest.mark.parametrize(
    "raw",
    [
        "t:name=x:name=y",
        "t:limit=3",
        "t:concurrency=0",
        "t:concurrency=lots",
        "t:concurrency=2:per_client=3",
        "t:name=Upper",
        "t:name=a,u:name=a",
        "t:reader:writer",
        "t::concurrency=2",
    ],
)
def test_token_options_are_strict(raw: str) -> None:
    with pytest.raises(ConfigError, match="API_TOKENS"):
        load_settings(
            {"API_TOKENS": raw, "POSTGRES_PASSWORD_READER": "pw", "POSTGRES_PASSWORD_WRITER": "pw"}
        )


def test_the_operations_port_and_tls_files(tmp_path) -> None:
    assert load_settings({"OPS_PORT": "9100"}).ops_port == 9100
    with pytest.raises(ConfigError, match="OPS_PORT"):
        load_settings({"PORT": "5001"})
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    tls = load_settings({"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)})
    assert (tls.tls_cert_file, tls.tls_key_file) == (str(cert), str(key))
    with pytest.raises(ConfigError, match="TLS_KEY_FILE"):
        load_settings({"TLS_CERT_FILE": str(cert)})
    with pytest.raises(ConfigError, match="TLS_CERT_FILE: no such file"):
        load_settings({"TLS_CERT_FILE": str(tmp_path / "none"), "TLS_KEY_FILE": str(key)})


def test_postgres_variables_build_the_dsn() -> None:
    settings = load_settings(
        {
            "POSTGRES_HOST": "db.internal",
            "POSTGRES_PORT": "6543",
            "POSTGRES_USER": "gw",
            "POSTGRES_PASSWORD": "pw",
            "POSTGRES_DB": "app",
        }
    )
    assert settings.dsn == {
        "host": "db.internal",
        "port": "6543",
        "user": "gw",
        "dbname": "app",
        "password": "pw",
    }


def test_database_url_takes_precedence_over_postgres_variables() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://urluser:urlpw@urlhost:7000/urldb",
            "POSTGRES_HOST": "envhost",
            "POSTGRES_PORT": "5433",
            "POSTGRES_USER": "envuser",
            "POSTGRES_PASSWORD": "envpw",
            "POSTGRES_DB": "envdb",
        }
    )
    assert settings.dsn == {
        "host": "urlhost",
        "port": "7000",
        "user": "urluser",
        "password": "urlpw",
        "dbname": "urldb",
    }


def test_blank_database_url_falls_back_to_postgres_variables() -> None:
    settings = load_settings({"DATABASE_URL": "  ", "POSTGRES_HOST": "envhost"})
    assert settings.dsn["host"] == "envhost"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://admin:Sup3rS3cretPw@db:5432/app?bogus=1",
        "postgresql://admin:Sup3rS3cretPw@[::1/app",
        "postgresql://admin:Sup3rS3cretPw@db:5432/app?sslmode=sometimes&x=1",
    ],
)
def test_database_url_error_does_not_leak_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": url})
    assert caught.value.variable == "DATABASE_URL"
    assert "Sup3rS3cretPw" not in str(caught.value)
    assert "Sup3rS3cretPw" not in repr(caught.value)
    assert caught.value.__cause__ is None


def test_a_mapped_role_logs_in_as_itself_with_its_own_password() -> None:
    settings = load_settings(
        {
            "POSTGRES_HOST": "db",
            "POSTGRES_USER": "gateway",
            "POSTGRES_PASSWORD": "gpw",
            "POSTGRES_DB": "app",
            "API_TOKENS": "a,r:reader,g:gateway",
            "POSTGRES_PASSWORD_READER": "rpw",
        }
    )
    assert settings.role_dsns == {
        "reader": {
            "host": "db",
            "port": "5432",
            "user": "reader",
            "dbname": "app",
            "password": "rpw",
        }
    }


def test_configuration_errors_name_the_variable_and_never_echo_a_token() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"API_TOKENS": "s3cret-token:READER"})
    assert str(raised.value).startswith("configuration error: API_TOKENS: ")
    assert "'reader'" in str(raised.value) and "s3cret" not in str(raised.value)
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD_READER"):
        load_settings({"API_TOKENS": "s3cret-token:reader"})


def test_a_read_only_role_is_one_a_token_logs_in_as() -> None:
    env = {"API_TOKENS": "a,r:reader", "POSTGRES_PASSWORD_READER": "rpw"}
    settings = load_settings({**env, "READ_ONLY_ROLES": " reader "})
    assert settings.read_only_roles == {"reader"}
    assert settings.role_is_read_only("reader") and not settings.role_is_read_only(None)
    assert load_settings({**env, "READ_ONLY": "true"}).role_is_read_only(None)
    with pytest.raises(ConfigError, match="READ_ONLY"):  # the gateway's own login
        load_settings({**env, "POSTGRES_USER": "gateway", "READ_ONLY_ROLES": "gateway"})


def test_a_read_only_role_may_read_from_other_servers() -> None:
    env = {
        "POSTGRES_HOST": "primary",
        "API_TOKENS": "a,r:reader",
        "POSTGRES_PASSWORD_READER": "rpw",
        "READ_ONLY_ROLES": "reader",
    }
    settings = load_settings({**env, "POSTGRES_HOST_READER": " replicas "})
    assert settings.role_dsns["reader"]["host"] == "replicas"
    assert settings.dsn["host"] == "primary"
    assert load_settings(env).role_dsns["reader"]["host"] == "primary"
    elsewhere = load_settings({**env, "POSTGRES_HOST_READER": "replicas:6432"}).role_dsns
    assert (elsewhere["reader"]["host"], elsewhere["reader"]["port"]) == ("replicas", "6432")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"POSTGRES_HOST_RAEDER": "replicas"}, "'raeder' is not a role of API_TOKENS"),
        ({"POSTGRES_HOST_READER": "replicas", "READ_ONLY_ROLES": ""}, "only a role of"),
        ({"POSTGRES_HOST_READER": " "}, "must be host or host:port"),
        ({"POSTGRES_HOST_READER": "a b"}, "must be host or host:port"),
        ({"POSTGRES_HOST_READER": "replicas:0"}, "must be host or host:port"),
        ({"POSTGRES_HOST_READER": "replicas:54x"}, "must be host or host:port"),
        ({"POSTGRES_HOST_READER": ":5432"}, "must be host or host:port"),
    ],
)
def test_a_role_on_other_servers_is_a_read_only_one_with_a_host(
    env: dict[str, str], problem: str
) -> None:
    base = {"API_TOKENS": "a,r:reader", "POSTGRES_PASSWORD_READER": "rpw"}
    with pytest.raises(ConfigError, match=problem) as raised:
        load_settings({**base, "READ_ONLY_ROLES": "reader", **env})
    assert raised.value.variable.startswith("POSTGRES_HOST_")
