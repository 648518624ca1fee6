"""The run as a markdown table (also printed) and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import scanning
from bench.workloads import WORKLOADS

SYSTEMS = ("gateway", "direct", "postgres-meta")
COLORS = {"gateway": "tab:blue", "direct": "tab:green", "postgres-meta": "tab:orange"}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _targets(cells: dict, stream: Any) -> list[tuple[str, str, bool]]:
    checks = []
    for key in ("select1", "point"):
        gw, pm = cells.get(("gateway", key, 8)), cells.get(("postgres-meta", key, 8))
        if gw and pm:
            ratio = gw["rps"] / pm["rps"] if pm["rps"] else float("inf")
            checks.append((f"{key} c=8: gateway >= 5x postgres-meta", f"{ratio:.1f}x", ratio >= 5))
        if gw:
            checks.append(
                (f"{key} c=8: gateway p99 <= 15 ms", f"{gw['p99_ms']:.1f} ms", gw["p99_ms"] <= 15)
            )
    gw, dr = cells.get(("gateway", "point", 8)), cells.get(("direct", "point", 8))
    if gw and dr:
        share = gw["rps"] / dr["rps"]
        checks.append(("point c=8: gateway >= 10 % of direct", f"{share:.1%}", share >= 0.10))
    if stream:
        checks.append(
            (
                "stream 1M rows: peak server RSS < 150 MB",
                f"{stream['peak_rss_mb']:.0f} MB",
                stream["peak_rss_mb"] < 150,
            )
        )
    return checks


def markdown(run: dict) -> str:
    cells = {(c["system"], c["workload"], c["concurrency"]): c for c in run["cells"]}
    concurrencies = sorted({c["concurrency"] for c in run["cells"]})
    out = [f"## Benchmark: {run['title']}", "", *[f"- {line}" for line in run["notes"]], ""]
    out += [
        "| workload | c | system | req/s | p50 ms | p95 ms | p99 ms | errors | client CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        for conc in concurrencies:
            for system in SYSTEMS:
                c = cells.get((system, workload.key, conc))
                if c is None:
                    continue
                out.append(
                    f"| {workload.title} | {conc} | {system} | {c['rps']:,.0f} | "
                    f"{c['p50_ms']:.2f} | {c['p95_ms']:.2f} | {c['p99_ms']:.2f} | "
                    f"{c['errors']} | {c['client_cpu']:.2f} |"
                )
    out += [
        "",
        "| workload | c | gateway req/s | direct q/s | postgres-meta req/s "
        "| gateway/direct | gateway/postgres-meta |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        for conc in concurrencies:
            gw = cells.get(("gateway", workload.key, conc))
            dr = cells.get(("direct", workload.key, conc))
            pm = cells.get(("postgres-meta", workload.key, conc))
            if gw is None:
                continue
            out.append(
                f"| {workload.title} | {conc} | {gw['rps']:,.0f} | "
                f"{dr['rps'] if dr else 0:,.0f} | {pm['rps'] if pm else 0:,.0f} | "
                f"{_ratio(gw['rps'], dr['rps']) if dr else 'n/a'} | "
                f"{_ratio(gw['rps'], pm['rps']) if pm else 'n/a'} |"
            )
    stream = run.get("stream")
    if stream:
        out += [
            "",
            f"NDJSON streaming through the gateway: {stream['rows']:,} rows in "
            f"{stream['seconds']:.1f} s = **{stream['rows_per_s']:,.0f} rows/s** "
            f"({stream['bytes'] / 2**20:.0f} MiB); server (master + workers) RSS idle "
            f"{stream['idle_rss_mb']:.0f} MB, **peak {stream['peak_rss_mb']:.0f} MB** "
            f"(peak PSS {stream['peak_pss_mb']:.0f} MB).",
        ]
    scan = run.get("scan")
    if scan:
        out += ["", *scanning.markdown(scan)]
    ceiling = run.get("ceiling")
    if ceiling:
        out += ["", "Load generator check (wrk alone against a trivial node responder):", ""]
        out += [f"- {line}" for line in ceiling]
    out += ["", "| target | measured | met |", "|---|---:|:---:|"]
    for name, value, met in _targets(cells, stream):
        out.append(f"| {name} | {value} | {'yes' if met else '**no**'} |")
    if run.get("same_run"):
        out += ["", *run["same_run"]]
    if run.get("breakdown"):
        out += ["", "## Where one worker's CPU goes (py-spy, (a) select 1, c=8; bench.dbpath)", ""]
        out += ["```", *run["breakdown"], "```"]
    return "\n".join(out) + "\n"


def plot(run: dict, path: Path) -> None:
    cells = {(c["system"], c["workload"], c["concurrency"]): c for c in run["cells"]}
    concurrencies = sorted({c["concurrency"] for c in run["cells"]})
    fig, axes = plt.subplots(2, len(WORKLOADS), figsize=(4.2 * len(WORKLOADS), 7.5))
    width = 0.8 / len(SYSTEMS)
    for col, workload in enumerate(WORKLOADS):
        for metric_row, (metric, label) in enumerate((("rps", "req/s"), ("p99_ms", "p99 ms"))):
            ax = axes[metric_row][col]
            for i, system in enumerate(SYSTEMS):
                values = [
                    cells.get((system, workload.key, conc), {}).get(metric, 0)
                    for conc in concurrencies
                ]
                xs = [x + (i - 1) * width for x in range(len(concurrencies))]
                ax.bar(xs, values, width, label=system, color=COLORS[system])
            ax.set_yscale("log")
            ax.set_xticks(range(len(concurrencies)), [f"c={c}" for c in concurrencies])
            ax.set_ylabel(label)
            if metric_row == 0:
                ax.set_title(workload.title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(run["title"], fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
