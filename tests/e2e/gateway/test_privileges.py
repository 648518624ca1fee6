"""Check 6 (continued): the logins' privileges as the catalogs hold them, exactly.

The reader's write attempt (test_round_trip) is refused by its read-only default, whatever
it was granted; this reads what each login was granted, as the superuser inside the
PostgreSQL pod, and compares it with what roles.sql grants.
"""

from __future__ import annotations

from harness.e2e import privileges

DATABASE = "app"  # the StatefulSet's APP_DATABASE, which roles.sql creates


def test_logins_have_exactly_the_privileges_roles_sql_grants(deployment) -> None:
    """Catches a deployment whose logins may do more than roles.sql grants (the reader
    granted INSERT, UPDATE and DELETE, which its read-only default hides from a write; a
    login made superuser or a member of another role; the app's tables granted to PUBLIC)
    or less (a table the gateway creates that the reader may not read)."""
    created = deployment.query("create table if not exists privilege_probe (id int)")
    assert created.status_code == 200, created.text
    output = deployment.superuser_sql(DATABASE, privileges.SQL)
    actual, relations = privileges.parse(output)
    assert "table app.privilege_probe" in relations, relations
    print(f"\nprivileges of the logins: {len(actual)}, on {len(relations)} relations of app")
    extra, missing = privileges.differences(actual, DATABASE, relations)
    assert not extra and not missing, privileges.report(extra, missing)
