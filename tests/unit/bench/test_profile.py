"""The profile summary reads py-spy's raw output, cut lines included."""

from pathlib import Path

from bench.profile import summarize


def test_summary_counts_inclusive_shares_and_leaves_out_cut_lines(tmp_path: Path) -> None:
    raw = tmp_path / "profile.raw"
    raw.write_text(
        "main (app/server.py:10);handle (app/routes.py:20) 3\n"
        "main (app/server.py:10);encode (app/encode.py:5) 1\n"
        "main (app/server.py:10);handle (app/rou\n"
    )
    summary = summarize(raw, top=10)
    assert summary.splitlines()[0].startswith("4 samples holding the GIL (1 unreadable lines")
    assert "100.0%  main (server.py)" in summary
    assert " 75.0%  handle (routes.py)" in summary
    assert " 25.0%  encode (encode.py)" in summary
