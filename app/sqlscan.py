"""Where PostgreSQL sees statement boundaries: a scanner that agrees with its lexer.

The gateway sends a client's SQL one statement at a time, so that each statement's rows are
read in bounded batches and transaction control can be refused. Both rest on seeing the text
as PostgreSQL's lexer does (src/backend/parser/scan.l): `--` comments end at a carriage return
or a line feed, block comments nest, quoted identifiers and dollar quotes have no escapes,
string constants follow `standard_conforming_strings` (as the server reports it for the
session) and continue across a line break in the first spelling's escaping rule, and an
identifier takes every character from U+0080 up and the dollar sign.

Where PostgreSQL versions differ (16 and later read `0x1F` and `1_000` as numbers), this reads
like 15: that can only make a piece end earlier than the server's statement, never later, so a
piece never holds two statements. A statement extends past a `;` only inside parentheses
(rule actions) or inside a `BEGIN ATOMIC ... END` routine body, recognised by exact keyword
sequences (CASE and END are reserved words, so their pairs are exact).

It also counts how much re-scanning PostgreSQL's lexer would do (it backs up over the run of
operator characters after every `/*`, and strips a trailing `+` or `-` one character at a
time), so that input the server would lex in super-linear time, which cannot be cancelled,
is refused before it is sent. Scanning itself takes time linear in the text, and stops as
soon as that count passes the caller's limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT_START = "A-Za-z_\u0080-\U0010ffff"
_IDENT_CONT = _IDENT_START + "0-9$"
_WORD = rf"[{_IDENT_START}][{_IDENT_CONT}]*+"
# A word that is not the prefix letter of a constant (E'', B'', X'', N'', U&'', U&""): one
# of two or more characters never is, and single letters are told apart without lookahead
# on every word (this is the scanner's inner loop).
_PLAIN_WORD = (
    rf"[{_IDENT_START}][{_IDENT_CONT}]++"
    r"|[A-DF-MO-TV-WYZa-df-mo-tv-wyz_\u0080-\U0010ffff]|[EeBbXxNn](?!')|[Uu](?!&['\"])"
)
_SPACE = " \t\n\r\f\v"
_LINE_COMMENT = r"--[^\n\r]*+"
_SIMPLE_BLOCK_COMMENT = r"/\*(?:[^*/]++|\*(?!/)|/(?!\*))*+\*/"  # one with no /* inside
_GAP = rf"(?:[{_SPACE}]++|{_LINE_COMMENT}|{_SIMPLE_BLOCK_COMMENT})*+"
# The gap between two spellings of one string constant: it must cross a line break.
_CONTINUE = rf"(?:[ \t\f\v]|{_LINE_COMMENT})*+[\n\r](?:[{_SPACE}]|{_LINE_COMMENT}[\n\r])*+'"
_PLAIN_BODY = r"(?:[^']++|'')*+"
_ESCAPE_BODY = r"(?:[^'\\]++|\\.|'')*+"
_OPERATOR_CHAR = r"(?:[~!@#^&|`?+*%<>=]|-(?!-)|/(?!\*))"
_DOLLAR_TAG = rf"(?:[{_IDENT_START}][{_IDENT_START}0-9]*+)?"
# PostgreSQL's backing up over an operator run costs it about the run's length squared; runs
# up to this length cost it no more than scanning a few times their length.
SHORT_OPERATOR_RUN = 8
# Anything that is not a word, a quote, a comment start, a dollar or a state-changing token.
_PLAIN_CHARS = rf"[^$;()'\"{_IDENT_START}~!@#^&|`?+\-*/%<>=]"


def _string(body: str) -> str:
    """A string constant from its opening quote: spellings joined across line breaks."""
    return rf"'{body}(?:'{_CONTINUE}{body})*+(?:'|\\?\Z)"


def _quoted(standard_strings: bool, dollar_group: str) -> str:
    """Every quoted form. Only valid where a token starts (never inside a word, where a
    letter is no prefix); a dollar quote without its closing delimiter is left out."""
    plain = _string(_PLAIN_BODY if standard_strings else _ESCAPE_BODY)
    return (
        rf"[Ee]{_string(_ESCAPE_BODY)}"
        rf"|(?:[BbXx]|[Uu]&){_string(_PLAIN_BODY)}"
        rf"|[Nn]?{plain}"
        r"|(?:[Uu]&)?\"(?:[^\"]++|\"\")*+(?:\"|\Z)"
        rf"|\$(?P<{dollar_group}>{_DOLLAR_TAG})\$(?s:.*?)\$(?P={dollar_group})\$"
    )


def _run(standard_strings: bool, nested: bool) -> re.Pattern[str]:
    """Everything up to the next `;` (taken along when `nested`: inside parentheses, which
    end every run, it ends nothing), parenthesis, nested block comment, unterminated dollar
    quote or run of more than SHORT_OPERATOR_RUN operator characters: the tokens the
    scanner handles itself. The commonest tokens come first: this is the inner loop."""
    semicolon = "|;" if nested else ""
    return re.compile(
        rf"""(?:
              (?:{_PLAIN_WORD}|{_PLAIN_CHARS}++{semicolon})++
            | {_quoted(standard_strings, "tag")}
            | {_LINE_COMMENT}
            | {_OPERATOR_CHAR}{{1,{SHORT_OPERATOR_RUN}}}+(?!{_OPERATOR_CHAR})
            | {_SIMPLE_BLOCK_COMMENT}
            | \$[0-9]++
            | \$(?!{_DOLLAR_TAG}\$)
        )++""",
        re.VERBOSE | re.DOTALL,
    )


# Words that decide how a statement runs: SELECT ... INTO and data-modifying statements with
# their RETURNING; and, in CREATE FUNCTION|PROCEDURE, those that open and close a body.
STATEMENT_KEYWORDS = frozenset({"INTO", "RETURNING", "INSERT", "UPDATE", "DELETE", "MERGE"})
_ROUTINE_KEYWORDS = frozenset({"BEGIN", "ATOMIC", "CASE", "END"})
_DATA_MODIFYING = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
# Which keywords a statement's kind needs to know about (its first word; "" for one that
# starts with a parenthesis). Once found, a keyword is not looked for again.
_NEEDED = {
    "SELECT": frozenset({"INTO"}),
    "VALUES": frozenset({"INTO"}),
    "TABLE": frozenset({"INTO"}),
    "": frozenset({"INTO"}),
    "WITH": STATEMENT_KEYWORDS,
    **dict.fromkeys(_DATA_MODIFYING, frozenset({"RETURNING"})),
}


def _finder(standard_strings: bool, keywords: frozenset[str]) -> re.Pattern[str]:
    """Finds the next of `keywords` in a run: quoted text and every other word are stepped
    over whole (so no match starts inside one), in bulk."""
    keyword = rf"(?i:{'|'.join(sorted(keywords))})(?![{_IDENT_CONT}])"
    return re.compile(
        rf"""(?:(?!{keyword})(?:{_PLAIN_WORD})|{_PLAIN_CHARS}++|{_OPERATOR_CHAR}
                |{_quoted(standard_strings, "tag")}|{_LINE_COMMENT}|{_SIMPLE_BLOCK_COMMENT}
                |\$[0-9]++|\$(?!{_DOLLAR_TAG}\$))*+
            (?P<keyword>{keyword})""",
        re.VERBOSE | re.DOTALL,
    )


_RUNS = {(scs, nested): _run(scs, nested) for scs in (True, False) for nested in (True, False)}
_FINDERS: dict[tuple[bool, frozenset[str]], re.Pattern[str]] = {}
_GAP_ONLY = re.compile(_GAP, re.DOTALL)
_LEADING_WORD = re.compile(rf"{_GAP}(?P<word>{_PLAIN_WORD})", re.DOTALL)
_BLANK = re.compile(rf"(?:[{_SPACE};]++|{_LINE_COMMENT}|{_SIMPLE_BLOCK_COMMENT})*+", re.DOTALL)
_PARENTHESES = re.compile(rf"[()][(){_SPACE},]*+")
_OPERATORS = re.compile(rf"{_OPERATOR_CHAR}++")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_OPENER_RUN = re.compile(r"[~!@#^&|`?+\-*/%<>=]++")
_ROUTINES = ("FUNCTION", "PROCEDURE")
LEADING_WORDS = 4  # CREATE OR REPLACE FUNCTION


def _finder_for(standard_strings: bool, keywords: frozenset[str]) -> re.Pattern[str]:
    key = (standard_strings, keywords)
    if key not in _FINDERS:
        _FINDERS[key] = _finder(standard_strings, keywords)
    return _FINDERS[key]


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement as PostgreSQL will see it: `text[start:end]`, without its `;`."""

    start: int
    end: int
    # The unquoted words the statement starts with (up to LEADING_WORDS), upper-cased.
    words: tuple[str, ...]
    # The STATEMENT_KEYWORDS its kind needs, found outside parentheses; and the
    # data-modifying ones that are the first word inside a parenthesis (WITH only).
    top_keywords: frozenset[str]
    paren_keywords: frozenset[str]
    # Characters PostgreSQL's lexer would scan again when backing up (see the module doc).
    lexer_cost: int


class LexerCostExceeded(Exception):
    """The text would make PostgreSQL's lexer back up more than the caller allows."""


class _Statement:
    """What the scanner tracks within one statement."""

    __slots__ = (
        "body_depth",
        "code",
        "cost",
        "depth",
        "needed",
        "paren_keywords",
        "pending_paren",
        "previous_keyword",
        "routine",
        "top_keywords",
        "words",
        "words_done",
    )

    def __init__(self) -> None:
        self.depth = 0  # open parentheses
        self.body_depth = 0  # inside BEGIN ATOMIC: 1 + the CASEs open in it
        self.routine = False  # CREATE [OR REPLACE] FUNCTION|PROCEDURE: may have a body
        self.words: list[str] = []
        self.words_done = False
        self.needed: frozenset[str] = frozenset()
        self.code = False  # anything but whitespace and comments
        self.previous_keyword = ""  # the keyword just before, with only a gap between
        self.top_keywords: set[str] = set()
        self.paren_keywords: set[str] = set()
        self.pending_paren = False  # the next word is the first inside a parenthesis
        self.cost = 0

    def token(self) -> None:
        """A token that is neither a keyword nor a gap: keywords around it are not adjacent."""
        if not self.words_done:
            self.words_complete()
        self.code = True
        self.pending_paren = False
        self.previous_keyword = ""

    def word(self, word: str) -> None:
        self.words.append(word)
        self.code = True
        if len(self.words) == LEADING_WORDS:
            self.words_complete()
        if word in self.needed:
            self.keyword(word)
        else:
            self.previous_keyword = ""

    def words_complete(self) -> None:
        self.words_done = True
        words = self.words
        if words[:1] == ["CREATE"]:
            kind = words[3:4] if words[1:3] == ["OR", "REPLACE"] else words[1:2]
            self.routine = bool(kind) and kind[0] in _ROUTINES
        first = words[0] if words else ""
        self.needed = _ROUTINE_KEYWORDS if self.routine else _NEEDED.get(first, frozenset())

    def keyword(self, word: str) -> None:
        self.code = True
        if self.depth != 0:
            self.previous_keyword = ""
            return
        if self.routine:
            if self.body_depth == 0:
                if word == "ATOMIC" and self.previous_keyword == "BEGIN":
                    self.body_depth = 1
            elif word == "CASE":
                self.body_depth += 1
            elif word == "END":
                self.body_depth -= 1
        else:
            self.top_keywords.add(word)
            self.needed = self.needed - {word}
        self.previous_keyword = word


class Scanner:
    """Splits SQL text into pieces, one statement each, from a given position."""

    def __init__(self, text: str, max_lexer_cost: int | None = None) -> None:
        self.text = text
        self.max_lexer_cost = max_lexer_cost

    def next_piece(self, position: int, standard_strings: bool = True) -> Piece | None:
        """The next statement at or after `position` (empty ones skipped), or None."""
        text = self.text
        while (position := _BLANK.match(text, position).end()) < len(text):
            piece, has_code = self._scan(position, standard_strings)
            if has_code:
                return piece
            position = piece.end + 1
        return None

    def pieces(self, standard_strings: bool = True) -> list[Piece]:
        """Every statement, `standard_strings` assumed for the whole text."""
        found = []
        position = 0
        while (piece := self.next_piece(position, standard_strings)) is not None:
            found.append(piece)
            position = piece.end + 1
        return found

    def _scan(self, start: int, standard_strings: bool) -> tuple[Piece, bool]:
        text = self.text
        statement = _Statement()
        position, end = start, len(text)
        while position < end:
            char = text[position]
            if char == ";":
                if statement.depth <= 0 and statement.body_depth == 0:
                    break
                statement.token()
                position += 1
            elif char in "()":
                parentheses = _PARENTHESES.match(text, position)
                chunk = parentheses.group()
                statement.token()
                statement.depth += chunk.count("(") - chunk.count(")")
                statement.pending_paren = chunk.rstrip(f"{_SPACE},")[-1] == "("
                position = parentheses.end()
            elif text.startswith("/*", position):
                position = self._nested_comment(position, statement)
            elif run := _RUNS[standard_strings, statement.depth > 0].match(text, position):
                self._read_run(run.group(), statement, standard_strings)
                position = run.end()
            elif (operators := _OPERATORS.match(text, position)) is not None:
                statement.token()
                self._charge(statement, _operator_cost(operators.group()))
                position = operators.end()
            else:  # a dollar quote that is never closed: PostgreSQL refuses the rest
                statement.token()
                position = end
        if not statement.words_done:
            statement.words_complete()
        piece = Piece(
            start=start,
            end=min(position, end),
            words=tuple(statement.words),
            top_keywords=frozenset(statement.top_keywords),
            paren_keywords=frozenset(statement.paren_keywords),
            lexer_cost=statement.cost,
        )
        return piece, statement.code

    @staticmethod
    def _read_run(run: str, statement: _Statement, standard_strings: bool) -> None:
        at = 0
        if statement.pending_paren:
            statement.pending_paren = False
            first = _LEADING_WORD.match(run)
            if first and (word := first["word"].upper()) in _DATA_MODIFYING:
                statement.paren_keywords.add(word)
        while not statement.words_done and (leading := _LEADING_WORD.match(run, at)):
            statement.word(leading["word"].upper())
            at = leading.end()
        if not statement.words_done and not _GAP_ONLY.fullmatch(run, at):
            statement.words_complete()
        if statement.depth == 0 and statement.needed:
            lowered = run.lower()
            if any(keyword.lower() in lowered for keyword in statement.needed):
                at = Scanner._find_keywords(run, at, statement, standard_strings)
        settled = statement.code and statement.words_done and not statement.previous_keyword
        if not settled and not _GAP_ONLY.fullmatch(run, at):
            statement.token()

    @staticmethod
    def _find_keywords(run: str, at: int, statement: _Statement, standard_strings: bool) -> int:
        """Note each needed keyword in the run; returns where the last one ended."""
        while statement.needed:
            found = _finder_for(standard_strings, statement.needed).match(run, at)
            if found is None:
                break
            if found.start("keyword") > at and not _GAP_ONLY.fullmatch(
                run, at, found.start("keyword")
            ):
                statement.token()
            statement.keyword(found["keyword"].upper())
            at = found.end()
        return at

    def _nested_comment(self, start: int, statement: _Statement) -> int:
        """Skip a block comment the run pattern could not (it nests). PostgreSQL's lexer
        matches the operator characters after each opener and backs up over them: charge
        each opener that run (consecutive openers share one, so this stays linear)."""
        depth = 0
        run_end = -1
        for mark in _COMMENT_MARK.finditer(self.text, start):
            if mark.group() == "/*":
                depth += 1
                if mark.start() >= run_end:
                    run_end = _OPENER_RUN.match(self.text, mark.start()).end()
                self._charge(statement, run_end - mark.start())
            else:
                depth -= 1
                if depth == 0:
                    return mark.end()
        return len(self.text)

    def _charge(self, statement: _Statement, cost: int) -> None:
        statement.cost += cost
        if self.max_lexer_cost is not None and statement.cost > self.max_lexer_cost:
            raise LexerCostExceeded(statement.cost)


def _operator_cost(run: str) -> int:
    """PostgreSQL strips every trailing `+` and `-` off an operator that holds none of
    ~!@#^&|`?%, then re-reads what it stripped as the next token: quadratic in the run
    (measured: 3,000 `+` took PostgreSQL 18 about 38 ms to lex)."""
    return len(run) ** 2
