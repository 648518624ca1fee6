"""The benchmark's SQL scan section: the worst case and every case, each body 1 MiB."""

from __future__ import annotations

from bench import scanning


def test_the_scan_section_names_the_worst_body() -> None:
    cases = [
        {"case": "semicolons", "bytes": scanning.MIB, "cpu_ms": 1.5, "answer": "ok"},
        {"case": "operator runs", "bytes": scanning.MIB, "cpu_ms": 105.8, "answer": "400"},
    ]
    text = "\n".join(scanning.markdown({"target_ms": 200.0, "cases": cases}))
    assert "worst **106 ms CPU** (operator runs; target under 200 ms)" in text
    assert "| semicolons | 1,048,576 | 1.5 | ok |" in text


def test_every_scan_case_is_one_mib() -> None:
    """A case shorter than 1 MiB would understate the cost the target is about."""
    sizes = {name: len(text) for name, text in scanning.CASES.items()}
    assert all(size >= scanning.MIB for size in sizes.values()), sizes
