"""SQL translation, SQLite to PostgreSQL: defaults, CHECK and index expressions, views, triggers.

``Catalog`` is the entry point: plan fills it with the target's tables and asks it for every
expression, view and trigger; build and verify use what the plan recorded.
"""

from __future__ import annotations

import re

from emrops.migrate.plan import is_text
from emrops.migrate.reflect import quote
from emrops.migrate.sql.catalog import Catalog, Translated, TranslationError
from emrops.migrate.sql.defaults import translate_default

__all__ = [
    "Catalog",
    "TranslationError",
    "Translated",
    "index_element",
    "missing_check",
    "translate_default",
]


# an index element naming a column: a bare identifier or one in double quotes (no quote inside)
_PLAIN = re.compile(r'(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|"(?P<quoted>[^"]+)"')


NOCASE_ELEMENT = re.compile(r"\s+COLLATE\s+(\w+|\"[^\"]+\")", re.I)


def index_element(element: str, catalog: Catalog, table: str) -> tuple[str, str]:
    """(PostgreSQL index element, note) for one SQLite index element."""
    note = ""
    text = element.strip()
    collation = None
    m = NOCASE_ELEMENT.search(text)
    if m:
        collation = m.group(1).strip('"').upper()
        note = f"COLLATE {m.group(1)} dropped"
        text = (text[: m.start()] + text[m.end() :]).strip()
    order = ""
    m = re.search(r"\s+(ASC|DESC)$", text, re.I)
    if m:
        order = " " + m.group(1).upper()
        text = text[: m.start()].strip()
    plain = _PLAIN.fullmatch(text)
    column = catalog.column(table, plain["bare"] or plain["quoted"]) if plain else None
    if column is not None:  # a column by its name: no parsing (nor sqlglot's import) needed
        return _column_element(column, collation, order, note)
    translated = catalog.expr(text, table, assign="index")
    if translated.startswith('"') and translated.endswith('"') and translated.count('"') == 2:
        name = translated[1:-1]
        found = next((c for c in catalog.columns_of(table) if c[0] == name), (name, ""))
        return _column_element(found, collation, order, note)
    return f"({translated}){order}", note


def _column_element(
    column: tuple[str, str], collation: str | None, order: str, note: str
) -> tuple[str, str]:
    """A column as an index element: under COLLATE NOCASE, a text column is indexed as
    lower(col), keeping SQLite's case-insensitive order and (UNIQUE) equality; a citext one
    needs nothing."""
    name, pg_type = column
    if collation == "NOCASE" and pg_type == "citext":
        return quote(name) + order, ""
    if collation == "NOCASE" and is_text(pg_type):
        note = "COLLATE NOCASE: indexed as lower() (case-insensitive, as in SQLite)"
        return f"(lower({quote(name)})){order}", note
    return quote(name) + order, note


def missing_check(names: list[str]) -> str:
    """A statement that fails on PostgreSQL naming the first of ``names`` it has no function
    (or aggregate) of."""
    listed = ", ".join("'" + n.replace("'", "''") + "'" for n in names)
    return (
        "DO $emrops$ DECLARE f text; BEGIN "
        f"SELECT n INTO f FROM unnest(ARRAY[{listed}]::text[]) AS n "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = n) LIMIT 1; "
        "IF f IS NOT NULL THEN RAISE EXCEPTION 'function %() does not exist on PostgreSQL "
        "(one the SQLite application defined?): the trigger would fail when it fires', f; "
        "END IF; END $emrops$"
    )
