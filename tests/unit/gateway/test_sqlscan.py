"""The SQL scanner agrees with PostgreSQL's lexer on where statements end.

The oracle is PostgreSQL's own scanner and parser, compiled into pglast (libpg_query,
PostgreSQL 17). A piece the gateway sends must never hold two statements: every boundary
PostgreSQL sees must be one of the scanner's. Hypothesis builds the texts out of the
fragments where lexers disagree (quotes of every kind, escapes, continuations across line
breaks, comments ended by a carriage return, dollar signs after letters above U+007F).
"""

from __future__ import annotations

import pglast
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pglast import parser

from app.sqlscan import LexerCostExceeded, Scanner

FRAGMENTS = [
    *(" ", "\n", "\r", "\t", "\r\n", ";", ";", ",", "(", ")", "+", "-", "*", "/", "=", "<>"),
    *("select", "commit", "x", "é", "ß$", "$", "$$", "$a$", "$1", "1", "2.5", "1e5"),
    *("'", "''", "'a'", "E'", "e'", "\\", "\\'", "U&'", 'U&"', '"', '""', '"x;"', "N'", "B'"),
    *("X'", "--", "-- c\n", "--c\r", "/*", "*/", "/* ; */", "/**/"),
]
TEXTS = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=24).map("".join)


def postgres_boundaries(text: str) -> set[int] | None:
    """Where PostgreSQL's lexer ends a non-empty statement (pglast counts characters), or
    None when it refuses the text (an unterminated quote, say: then nothing runs at all)."""
    try:
        tokens = parser.scan(text)
    except pglast.parser.ParseError:
        return None
    boundaries, depth, content = set(), 0, False
    for token in tokens:
        if token.name == "ASCII_59" and depth <= 0:  # ;
            if content:
                boundaries.add(token.start)
            # Depth restarts with each statement, as in the scanner: a statement whose
            # parentheses do not balance is a syntax error, whichever count one keeps.
            content, depth = False, 0
            continue
        depth += {"ASCII_40": 1, "ASCII_41": -1}.get(token.name, 0)
        content = content or token.name not in {"SQL_COMMENT", "C_COMMENT"}
    if content:
        boundaries.add(len(text))
    return boundaries


def scanner_boundaries(text: str) -> set[int]:
    return {piece.end for piece in Scanner(text).pieces()}


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_pieces_end_where_postgresql_ends_statements(text: str) -> None:
    expected = postgres_boundaries(text)
    assume(expected is not None)
    assert scanner_boundaries(text) == expected, repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "create function f() returns int language sql begin atomic select 1; select 2; end",
        "create or replace procedure p() language sql begin atomic "
        "select case when true then 1 else 2 end; end; select 3",
        "create function f(begin int) returns int language sql return begin; select 2",
        "create function f() returns int language sql begin atomic select 1; end; commit",
        "create rule r as on insert to t do also (insert into u values (1); notify c); select 1",
        "select 1; select (2); values (3)",
    ],
)
def test_routine_bodies_and_rule_actions_end_where_postgresqls_parser_says(text: str) -> None:
    ends = {piece.stop for piece in pglast.split(text, with_parser=True, only_slices=True)}
    ours = {piece.end for piece in Scanner(text).pieces()}
    # pglast's slices end before trailing blanks; ours at the `;` that ends the statement.
    assert {text[:end].rstrip() and len(text[:end].rstrip()) for end in ours} == ends


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("select 1; commit", ["select 1", "commit"]),
        # A carriage return ends a -- comment.
        ("--x\rset role r;\ninsert into t values (1)", ["set role r", "insert into t values (1)"]),
        # The second spelling of a constant keeps the first one's E'' escapes.
        ("select E'x'\n'\\' ; '; commit; --'", ["select E'x'\n'\\' ; '", "commit"]),
        ("select 1E'\\' x '; commit", ["select 1E'\\' x '", "commit"]),
        (
            "select é$$ as x; commit; select 1 as y$$",
            ["select é$$ as x", "commit", "select 1 as y$$"],
        ),
        ("select $a$ $b$ ; $b$ ; $a$; end", ["select $a$ $b$ ; $b$ ; $a$", "end"]),
        ("select /* /* */ ; */ 1; abort", ["select /* /* */ ; */ 1", "abort"]),
        (";;; ; /* */ -- only\n", []),
        ('select "a;b"; end', ['select "a;b"', "end"]),
        ("select 'never closed; commit", ["select 'never closed; commit"]),
        ("select $$ never closed; commit", ["select $$ never closed; commit"]),
    ],
)
def test_pieces(text: str, pieces: list[str]) -> None:
    assert [text[p.start : p.end].strip() for p in Scanner(text).pieces()] == pieces


def test_backslashes_escape_when_standard_conforming_strings_is_off() -> None:
    text = "select '\\'; commit; --'"
    assert [p.words for p in Scanner(text).pieces(standard_strings=True)] == [
        ("SELECT",),
        ("COMMIT",),
    ]
    assert [p.words for p in Scanner(text).pieces(standard_strings=False)] == [("SELECT",)]


@pytest.mark.parametrize(
    ("text", "words", "top", "paren"),
    [
        ("select 1 as x into t", ("SELECT",), {"INTO"}, set()),
        ("select 1into t", ("SELECT",), {"INTO"}, set()),  # PostgreSQL 15: 1, then INTO
        ("select 'into' from t", ("SELECT",), set(), set()),
        (
            "insert into t values (1) returning id",
            ("INSERT", "INTO", "T", "VALUES"),
            {"RETURNING"},
            set(),
        ),
        (
            "with d as (delete from t returning *) select * from d",
            ("WITH", "D", "AS"),
            set(),
            {"DELETE"},
        ),
        ("select E'x' from t", ("SELECT",), set(), set()),
        ("prepare transaction 'x'", ("PREPARE", "TRANSACTION"), set(), set()),
    ],
)
def test_what_a_statement_is(text: str, words: tuple[str, ...], top: set, paren: set) -> None:
    (piece,) = Scanner(text).pieces()
    assert (piece.words, piece.top_keywords, piece.paren_keywords) == (words, top, paren)


def test_lexer_cost_counts_backing_up_and_stops_at_the_limit() -> None:
    nested = "select 1 " + "/*" * 1000 + " " + "*/" * 1000
    (piece,) = Scanner(nested).pieces()
    assert piece.lexer_cost >= 1000 * 1000  # each opener re-scans the rest of the run
    assert Scanner("select 1 /* a */ + 2").pieces()[0].lexer_cost == 0
    with pytest.raises(LexerCostExceeded):
        Scanner("select 1 " + "/*" * 100_000, max_lexer_cost=10_000).pieces()
