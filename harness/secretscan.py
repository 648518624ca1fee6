"""Find a deployment's secrets where they must never be: files a run wrote, failure reports.

A leak is reported by where it is and which secret (its name), never by its value, so the
report of a leak does not leak it again. Each secret is looked for as it is and as base64,
the form `kubectl get secret -o yaml` prints a Secret's data in.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Shorter values would match by chance; every generated secret is far longer.
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class Leak:
    where: str  # a file, or the failure report of a check
    secret: str  # the secret's name and form, e.g. "admin_token (base64)"

    def __str__(self) -> str:
        return f"{self.where}: {self.secret}"


def forms(secrets: Mapping[str, str]) -> dict[str, bytes]:
    """Each named secret as it is and as base64, by a name that says which form."""
    found: dict[str, bytes] = {}
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"secret {name} is too short to scan for without false alarms")
        found[name] = value.encode()
        found[f"{name} (base64)"] = base64.b64encode(value.encode())
    return found


def names_in(data: bytes, wanted: Mapping[str, bytes]) -> list[str]:
    """The names of the secrets whose form occurs in `data`."""
    return [name for name, form in wanted.items() if form in data]


def redact(text: str, wanted: Mapping[str, bytes]) -> str:
    """`text` with every secret replaced by its name (the longest first: API_TOKENS holds
    the tokens)."""
    for name, form in sorted(wanted.items(), key=lambda item: -len(item[1])):
        text = text.replace(form.decode(), f"<{name}: redacted>")
    return text


def scan_files(paths: Iterable[Path], wanted: Mapping[str, bytes], root: Path) -> list[Leak]:
    """Every file of `paths` that holds a secret, named relative to `root`."""
    leaks = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:  # removed while the run was tidying up: nothing left to leak
            continue
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        leaks += [Leak(where, name) for name in names_in(data, wanted)]
    return leaks


def files_since(root: Path, since: float) -> list[Path]:
    """The files under `root` modified at or after `since` (time.time()): the ones a run
    wrote; older files cannot hold the secrets it made."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since:
                found.append(path)
        except OSError:
            continue
    return found
