"""The privilege check's reading of the catalog rows and its verdict, without a server."""

from __future__ import annotations

import pytest

from harness.e2e import privileges
from harness.e2e.privileges import Privilege

SOUND = """(relation)\t\ttable app.notes
(relation)\t\tview app.summary
PUBLIC\tUSAGE\tschema public
gateway\tOWNER\tdatabase app
gateway\tEXECUTE\tfunction lo_creat(integer)
gateway\tEXECUTE\tfunction lo_create(oid)
gateway\tEXECUTE\tfunction lo_from_bytea(oid,bytea)
gateway\tOWNER\tlarge objects
gateway\tOWNER\tobjects in schema app
gateway\tLOGIN\trole attribute
gateway\tOWNER\tschema app
reader\tCONNECT\tdatabase app
reader\tSELECT\tdefault privileges of gateway in schema app on tables
reader\tLOGIN\trole attribute
reader\tUSAGE\tschema app
reader\tSELECT\ttable app.notes
reader\tSELECT\tview app.summary"""


def test_the_sound_rows_are_exactly_what_roles_sql_grants() -> None:
    actual, relations = privileges.parse(SOUND)
    assert relations == ["table app.notes", "view app.summary"]
    assert privileges.differences(actual, "app", relations) == ([], [])


def test_each_extra_and_missing_privilege_is_named() -> None:
    rows = SOUND.replace("reader\tSELECT\tview app.summary", "reader\tINSERT\ttable app.notes")
    rows += "\nreader\tSUPERUSER\trole attribute"
    actual, relations = privileges.parse(rows)
    extra, missing = privileges.differences(actual, "app", relations)
    assert extra == [
        Privilege("reader", "INSERT", "table app.notes"),
        Privilege("reader", "SUPERUSER", "role attribute"),
    ]
    assert missing == [Privilege("reader", "SELECT", "view app.summary")]
    assert privileges.report(extra, missing).splitlines() == [
        "the logins' privileges differ from what roles.sql grants:",
        "  extra: reader: INSERT on table app.notes",
        "  extra: reader: SUPERUSER on role attribute",
        "  missing: reader: SELECT on view app.summary",
    ]


def test_output_that_is_not_the_querys_is_refused() -> None:
    with pytest.raises(ValueError, match="not a row"):
        privileges.parse('psql: error: connection to server failed: FATAL: role "x"')
