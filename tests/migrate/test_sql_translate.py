"""The SQL translator on odd input: a translation or TranslationError, never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.migrate.sql import Catalog, TranslationError
from emrops.migrate.sql.triggers import translate


def _catalog() -> Catalog:
    c = Catalog()
    c.add(
        "t",
        "t",
        [
            ("id", "id", "bigint"),
            ("n", "n", "double precision"),
            ("s", "S", "text"),
            ("b", "b", "boolean"),
            ("ts", "ts", "timestamptz"),
            ("j", "j", "jsonb"),
            ("d", "d", "numeric(8,2)"),
        ],
        rowid="id",
        key=["id"],
    )
    return c


ATOMS = ["id", "n", "s", "b", "ts", "j", "d", "1", "2.5", "'x'", "NULL", "'2024-01-01'", "NEW.s"]
FUNCS = [
    "ifnull", "substr", "instr", "group_concat", "strftime", "date", "datetime", "julianday",
    "printf", "json_extract", "iif", "total", "typeof", "length", "upper", "max", "unixepoch",
    "zeroblob", "coalesce", "abs", "round", "json_valid", "time", "sum", "avg", "count",
]  # fmt: skip
OPS = ["+", "-", "*", "/", "%", "||", "=", "==", "<>", "<", ">=", "AND", "OR", "LIKE", "GLOB"]


def _exprs() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(ATOMS)
    return st.recursive(
        leaf,
        lambda sub: st.one_of(
            st.tuples(sub, st.sampled_from(OPS), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(FUNCS), st.lists(sub, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            sub.map(lambda e: f"CAST({e} AS INTEGER)"),
            sub.map(lambda e: f"{e} IN ()"),
            sub.map(lambda e: f"{e} COLLATE NOCASE"),
            st.tuples(sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} END"),
        ),
        max_leaves=8,
    )


@settings(max_examples=50, deadline=None)
@given(_exprs())
def test_expressions_translate_or_say_why(expr: str) -> None:
    c = _catalog()
    for attempt in (
        lambda: c.expr(expr.replace("NEW.s", "s"), "t"),
        lambda: c.view("v", "v", f"SELECT {expr.replace('NEW.s', 's')} FROM t", [("e", "e")]),
        lambda: c.expr(expr, "t", trigger="t"),
    ):
        try:
            out = attempt()
        except TranslationError:
            continue
        assert out


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(["BEFORE", "AFTER", "INSTEAD OF", ""]),
    st.sampled_from(["INSERT", "UPDATE", "DELETE", "UPDATE OF s"]),
    st.lists(
        st.sampled_from(
            [
                "UPDATE t SET s = NEW.s WHERE id = NEW.id",
                "UPDATE t SET ts = CURRENT_TIMESTAMP WHERE rowid = NEW.rowid",
                "INSERT INTO t (s) VALUES (NEW.s)",
                "INSERT INTO t SELECT * FROM t",
                "DELETE FROM t WHERE id = OLD.id",
                "SELECT RAISE(ABORT, 'no')",
                "SELECT RAISE(IGNORE)",
                "SELECT 1",
                "UPDATE nowhere SET x = 1",
                "SELECT CASE WHEN NEW.n < 0 THEN RAISE(FAIL, 'neg') END",
            ]
        ),
        min_size=0,
        max_size=3,
    ),
)
def test_triggers_translate_or_say_why(timing: str, event: str, body: list[str]) -> None:
    sql = f"CREATE TRIGGER x {timing} {event} ON t BEGIN {'; '.join(body)}; END"
    try:
        done = translate(_catalog(), sql, "x", "x_fn")
    except TranslationError as exc:
        assert str(exc)
        return
    assert done.trigger_sql.startswith('CREATE TRIGGER "x" ')


@pytest.mark.parametrize(
    "sql", ["CREATE TRIGGER", "CREATE TRIGGER x AFTER INSERT ON t", "CREATE TRIGGER x ON"]
)
def test_broken_trigger_text_is_a_translation_error(sql: str) -> None:
    with pytest.raises(TranslationError):
        translate(_catalog(), sql, "x", "x_fn")


@pytest.mark.parametrize(
    "element",
    ["s", "S", '"s"', "id DESC", '"s" ASC', "s COLLATE NOCASE", '"with space"', "n  DESC"],
)
def test_an_index_element_naming_a_column_is_the_same_without_the_parser(element: str) -> None:
    """index_element takes a plain column name without sqlglot; what it gives equals what the
    parser gives (the target's spelling, quoted, with the order and the collation note)."""
    import re

    import emrops.migrate.sql as sql

    c = _catalog()
    c.add("u", "u", [("with space", "With Space", "text")])
    table = "u" if "space" in element else "t"
    fast = sql.index_element(element, c, table)
    saved, sql._PLAIN = sql._PLAIN, re.compile(r"(?!)(?P<bare>)(?P<quoted>)")
    try:
        assert sql.index_element(element, c, table) == fast
    finally:
        sql._PLAIN = saved
    assert fast[0].startswith(('"S"', '"id"', '"n"', '"With Space"', '(lower("S"))'))


def test_a_plan_without_views_checks_or_expressions_does_not_import_sqlglot(tmp_path) -> None:
    """sqlglot (about 90 ms of start-up) loads at the first translation, not with the plan."""
    import subprocess
    import sys

    db = tmp_path / "plain.db"
    code = (
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(db)!r})\n"
        'conn.executescript(\'CREATE TABLE a (id INTEGER PRIMARY KEY, "x y" TEXT, n REAL);'
        " CREATE INDEX a_xy ON a (\"x y\" DESC, n); INSERT INTO a VALUES (1, \\'q\\', 2.5);')\n"
        "from emrops.migrate.planner import build_plan\n"
        "plain = build_plan(conn)\n"
        "before = 'sqlglot' in sys.modules\n"
        "conn.execute('CREATE VIEW v AS SELECT id + 1 AS k FROM a')\n"
        "with_view = build_plan(conn)\n"
        "print(before, 'sqlglot' in sys.modules, len(plain.tables))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "True", "1"], out.stderr
