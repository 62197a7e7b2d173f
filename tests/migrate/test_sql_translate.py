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
