"""Read-only SQL: accept exactly one SELECT/WITH statement, as DuckDB's own parser classifies it."""

from __future__ import annotations

from k2cli.errors import K2Error, first_line

MAX_SQL_CHARS = 100_000


class ForbiddenSQL(K2Error):
    """SQL that is not a single read-only query."""

    exit_code = 2


def read_only_statement(sql: str) -> str:
    """Return the single SELECT statement in `sql` (without a trailing `;`), or raise ForbiddenSQL."""
    import duckdb

    text = (sql or "").strip()
    if not text:
        raise ForbiddenSQL("the SQL is empty; give one SELECT … statement over the `trades` view")
    if len(text) > MAX_SQL_CHARS:
        raise ForbiddenSQL(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    if "\x00" in text:
        raise ForbiddenSQL("the SQL contains a NUL character")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise ForbiddenSQL(f"the SQL does not parse: {first_line(exc)}") from None
    except ValueError:  # a statement type this duckdb build cannot even name
        raise ForbiddenSQL("only a single SELECT (or WITH … SELECT) query is allowed") from None
    if len(statements) != 1:
        raise ForbiddenSQL(f"exactly one statement is allowed, got {len(statements)}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise ForbiddenSQL(f"only read-only SELECT queries are allowed; this is a {statement.type.name} statement")
    query = statement.query.strip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    return query
