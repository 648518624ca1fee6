"""What every connection starts with (pure logic: the startup options' text)."""

from __future__ import annotations

import shlex

from app.sessions import pinned_settings, startup_options
from app.settings import Settings


def _parsed(options: str) -> dict[str, str]:
    """libpq splits `options` at unescaped spaces, as a POSIX shell would here."""
    words = shlex.split(options)
    pairs = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_every_pinned_setting_reaches_the_server_intact() -> None:
    settings = Settings(schema="tenant_a")
    for read_only in (False, True):
        parsed = _parsed(startup_options(settings, read_only))
        assert pinned_settings(settings, read_only).items() <= parsed.items()
        assert parsed["default_transaction_isolation"] == "read committed"  # space escaped
        assert parsed["default_transaction_read_only"] == ("on" if read_only else "off")
        assert parsed["synchronous_commit"] == "on"
        assert parsed["search_path"] == "tenant_a, public"
