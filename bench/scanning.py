"""The SQL scan's CPU per 1 MiB body, for the inputs that cost it most.

app.sqlguard scans every query before it is sent (statement ends, the lexer-cost refusal);
its cost must stay linear in the body whatever the body holds: any 1 MiB body in under
200 ms of CPU (issue 9's target). Each case fills 1 MiB with one construct, measured with
`time.process_time()` on a fresh (uncached) check.
"""

from __future__ import annotations

import time

from app import sqlguard
from app.errors import ApiError

MIB = 1024 * 1024
TARGET_MS = 200.0


def _filled(unit: str, head: str = "select 1 ") -> str:
    return (head + unit * (MIB // len(unit) + 1))[:MIB]


CASES = {
    "semicolons": ";" * MIB,
    "statements (select 1;)": _filled("select 1;", ""),
    "nested comment openers": _filled("/*"),
    "comments": _filled("/* x */ "),
    "line comments ended by CR": _filled("--x\r"),
    "string literals": _filled("'a',"),
    "E strings with escapes": _filled("E'\\\\\\'x',"),
    "dollar quotes": _filled("$q$x$q$,"),
    "an unterminated dollar quote": "select $q$" + "x" * MIB,
    "U& identifiers": _filled('U&"a",'),
    "quoted identifiers": _filled('"a""b",'),
    "operator runs": _filled("+-*/<>=~!@#%^&|`? "),
    "identifiers": _filled("abc "),
    "numbers": _filled("1.5e10 "),
    "non-ASCII letters before $": _filled("é$x$ "),
}


def measure() -> list[dict]:
    """One row per case: its size, the check's CPU time and its answer (ok or the status)."""
    rows = []
    for name, text in CASES.items():
        started = time.process_time()
        try:
            sqlguard.check(text + f" -- {name}")  # a text of its own: never a cache hit
            answer = "ok"
        except ApiError as error:
            answer = str(error.status)
        rows.append(
            {
                "case": name,
                "bytes": len(text.encode()),
                "cpu_ms": (time.process_time() - started) * 1000,
                "answer": answer,
            }
        )
    return rows


def markdown(scan: dict) -> list[str]:
    """The report's lines for `{"target_ms": ..., "cases": measure()}`."""
    worst = max(scan["cases"], key=lambda case: case["cpu_ms"])
    return [
        f"The SQL scan (app.sqlguard.check) of 1 MiB bodies: worst **{worst['cpu_ms']:.0f} ms "
        f"CPU** ({worst['case']}; target under {scan['target_ms']:.0f} ms).",
        "",
        "| body | bytes | CPU ms | answer |",
        "|---|---:|---:|---|",
        *(
            f"| {c['case']} | {c['bytes']:,} | {c['cpu_ms']:.1f} | {c['answer']} |"
            for c in scan["cases"]
        ),
    ]
