"""The read-only SQL check: exactly one SELECT, as DuckDB's parser classifies it."""

from __future__ import annotations

import pytest

from k2cli.lake.sqlguard import ForbiddenSQL, read_only_statement

ALLOWED = [
    "SELECT * FROM trades",
    "select symbol, count(*) from trades group by 1;",
    "WITH t AS (SELECT * FROM trades) SELECT count(*) FROM t",
    "FROM trades LIMIT 5",
    "SELECT 1 UNION ALL SELECT 2",
    "DESCRIBE trades",
    "SELECT ';' AS semicolon_in_a_string",
]

REFUSED = [
    ("COPY (SELECT * FROM trades) TO '/tmp/k2-leak.csv'", "COPY"),
    ("ATTACH '/tmp/k2-evil.db' AS evil", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("PRAGMA version", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("CREATE TABLE x AS SELECT * FROM trades", "CREATE"),
    ("INSERT INTO trades VALUES (1)", "INSERT"),
    ("UPDATE trades SET price = 0", "UPDATE"),
    ("DELETE FROM trades", "DELETE"),
    ("DROP VIEW trades", "DROP"),
    ("CALL pragma_version()", "CALL"),
    ("EXPORT DATABASE '/tmp/k2-export'", "EXPORT"),
    ("SELECT 1; DROP VIEW trades", "exactly one statement"),
    ("SELECT * FROM trades; COPY trades TO '/tmp/x.csv'", "exactly one statement"),
    ("", "empty"),
    ("   ", "empty"),
    ("SELEC * FROM trades", "does not parse"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_single_select_is_accepted(sql: str) -> None:
    statement = read_only_statement(sql)
    assert statement
    assert not statement.endswith(";")


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_anything_else_is_refused_with_the_reason(sql: str, why: str) -> None:
    with pytest.raises(ForbiddenSQL) as info:
        read_only_statement(sql)
    assert why in str(info.value)
    assert info.value.exit_code == 2


def test_trailing_semicolons_are_dropped_but_the_query_kept() -> None:
    assert read_only_statement("SELECT 42 ;; ") == "SELECT 42"
