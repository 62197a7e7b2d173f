"""CHECKs and translated indexes evaluated by the target itself over the source's values.

A translated CHECK can judge an existing row differently from SQLite's expression: SQLite's
``upper()`` folds ASCII letters only and PostgreSQL's every letter; SQLite compares a
timestamp column's text with ``'2000-01-01'`` as text, PostgreSQL as instants. A unique
index over an expression can likewise hold apart in SQLite what its translation makes equal
(``lower('É')`` and ``lower('é')``; ``json_extract`` of ``1`` and ``"1"``). Evaluating
SQLite's side in the plan would then promise a run whose ALTER TABLE or CREATE INDEX fails.

So for each table with CHECKs, expression indexes or partial unique indexes, the plan copies
the row key and the columns those name into a temporary table of the target types, named
like the table (inside the trial's rolled-back transaction, where ``pg_temp`` is searched
first), the same way the copy sends them (COPY text built by SQLite, row by row only where a
value needs Python); then it asks PostgreSQL for the rows each translated CHECK rejects and
builds each such index there as the run will: every row, not a sample. Rows whose values do
not convert are anomalies of their own and are left out.

A CHECK or index this cannot evaluate (a column it names was not recognised, a value the
COPY refuses) is left to the SQLite evaluation (:func:`emrops.migrate.trial.check_source_rows`)
or to the run.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from typing import Any

import psycopg

from emrops.migrate import sqlcopy
from emrops.migrate.plan import ColumnPlan, PostObject, TablePlan
from emrops.migrate.reading import read_batches, read_range
from emrops.migrate.reflect import quote
from emrops.migrate.rowconv import row_converter

KEY = "emrops_key"  # the rowid of a rowid table (a WITHOUT ROWID table keeps its own key)

KEY_HINT = (
    "the run's unique key would fail on these rows: values SQLite keeps apart as text are one "
    "value once the cast rule converts them ('007' and '7' are 7, '1.50' and '1.5' are 1.5): "
    'merge those rows in the source, or change the cast rule (type = "text" keeps them apart)'
)

INDEX_HINT = (
    "the run's CREATE INDEX would fail on these rows: the translated expression makes equal "
    "(or cannot compute) what SQLite's kept apart (an index keeps PostgreSQL's lower() and "
    "upper(), which fold every letter, SQLite's ASCII only; json_extract gives text, so 1 "
    'and "1" meet; bigint arithmetic overflows). Merge those rows '
    "in the source, or drop the index from the source schema and create one by hand after "
    "the run"
)

HINT = (
    "the run's ALTER TABLE would fail on these rows. PostgreSQL's translation can judge a row "
    "unlike SQLite: a timestamp column compares as an instant (as text in SQLite), bigint "
    "arithmetic overflows (SQLite goes on in reals), a uuid column's text has dashes. Fix "
    "those rows in the source, drop the CHECK from the source "
    'schema, or give the column a cast rule (type = "text" keeps text comparisons)'
)


@dataclasses.dataclass
class Violation:
    table: str
    check: str
    sql: str
    count: int
    key: Any
    error: str = ""  # PostgreSQL's message when evaluating the CHECK itself failed


def expression(tp: TablePlan, post: PostObject) -> str | None:
    """The CHECK's PostgreSQL expression, as the statement the run executes holds it."""
    head = f"ALTER TABLE {quote(tp.target)} ADD CONSTRAINT {quote(post.name)} CHECK ("
    if not post.sql.startswith(head) or not post.sql.endswith(")"):
        return None
    return post.sql[len(head) : -1]


def _named(columns: list[ColumnPlan], exprs: list[str]) -> list[ColumnPlan]:
    """The columns the expressions may name (quoted or bare, any case): a superset is only
    slower, a column missed makes the query fail and the CHECK falls back to SQLite."""
    text = "\n".join(exprs)
    out = []
    for c in columns:
        bare = re.compile(rf"(?<![\w$]){re.escape(c.target)}(?![\w$])", re.I)
        if quote(c.target) in text or bare.search(text):
            out.append(c)
    return out


def _reduced(tp: TablePlan, used: list[ColumnPlan]) -> TablePlan:
    """``tp`` cut down to its key and ``used``, loaded into a temporary table of its name."""
    if tp.without_rowid:
        keys = [c for c in tp.columns if c.source in tp.key]
        cols = keys + [c for c in used if c not in keys]
    else:
        key = ColumnPlan(tp.key[0], KEY, "", "bigint", "bigint", "", notnull=True, fast=True)
        cols = [key, *used]
    return dataclasses.replace(tp, columns=cols, post=[])


def _key_sql(tp: TablePlan, small: TablePlan) -> list[str]:
    if not tp.without_rowid:
        return [quote(KEY)]
    return [quote(c.target) for c in small.columns if c.source in tp.key]


def _load(pg: psycopg.Connection, src: sqlite3.Connection, small: TablePlan) -> None:
    """COPY ``small``'s rows into the temporary table, as the run's copy builds them; a row
    whose values do not convert (an anomaly the plan reports) is left out."""
    cols = ", ".join(quote(c.target) for c in small.columns)

    def skip(*_: Any) -> None:
        return None

    # a rowid table's rowid is read twice: as the rows' lead (dropped by the converter) and
    # as the KEY column
    convert = row_converter(small, skip, strict=True)

    with pg.cursor().copy(f"COPY pg_temp.{quote(small.target)} ({cols}) FROM STDIN") as cp:

        def send(batch: Any) -> None:
            for row in batch:
                out = convert(row)
                if out is None:
                    continue
                try:
                    cp.write_row(out)
                except psycopg.DataError:
                    continue  # a NUL byte: an anomaly of its own

        if sqlcopy.line_sql(small) is not None:
            for chunk in sqlcopy.chunks(src, small):
                if chunk.data is not None:
                    cp.write(chunk.data)
                else:
                    send(read_range(src, small, chunk.after, chunk.hi, skip))
        else:
            for batch in read_batches(src, small, skip):
                send(batch)


def translated_index(post: PostObject) -> bool:
    """An index over an expression (``((...))``) or with a WHERE, both translated, or a
    partial unique one: what PostgreSQL may compute unlike SQLite."""
    return post.kind == "index" and ("((" in post.sql or " WHERE " in post.sql)


# converters that turn a cast rule's text into numbers or booleans (row by row): '007' and
# '7', '1.50' and '1.5', 'yes' and 't' are distinct text in SQLite and one value there
_NUMBERS = {"bigint", "double", "numeric", "bool"}


def number_keys(tp: TablePlan, posts: list[PostObject]) -> list[PostObject]:
    """Unique keys (UNIQUE, PRIMARY KEY, unique indexes) over a column whose text a cast rule
    converts to a number or a boolean: built on the target too, since values SQLite keeps
    apart can be one value there (the SQLite-side check compares their text)."""
    converted = [c for c in tp.columns if c.converter in _NUMBERS and not c.fast]
    if not converted:
        return []
    return [
        p
        for p in posts
        if (p.kind in ("unique", "pk") or p.sql.startswith("CREATE UNIQUE INDEX"))
        and _named(converted, [p.sql])
    ]


def evaluate(
    pg: psycopg.Connection,
    src: sqlite3.Connection,
    tp: TablePlan,
    checks: list[PostObject],
    indexes: list[PostObject] | None = None,
) -> tuple[list[Violation], set[str]]:
    """Violations of ``checks`` (CHECKs of ``tp`` that compiled on the target) and failures
    of ``indexes`` (built as the run builds them) over the source rows, and the names of the
    checks that were evaluated. ``pg`` is inside a transaction (the trial's); everything is
    done under a savepoint and dropped."""
    exprs = {p.name: e for p in checks if (e := expression(tp, p)) is not None}
    indexes = indexes or []
    if not tp.rows:
        return [], set(exprs)
    if not exprs and not indexes:
        return [], set()
    texts = list(exprs.values()) + [i.sql for i in indexes]
    small = _reduced(tp, _named(tp.columns, texts))
    defs = ", ".join(f"{quote(c.target)} {c.pg_type}" for c in small.columns)
    keys = _key_sql(tp, small)
    found: list[Violation] = []
    done: set[str] = set()
    try:
        with pg.transaction():
            pg.execute(f"CREATE TEMP TABLE {quote(tp.target)} ({defs}) ON COMMIT DROP")
            _load(pg, src, small)
            for name, expr in exprs.items():
                outcome = _violations(pg, tp, name, expr, keys)
                if outcome is None:
                    continue
                done.add(name)
                if outcome.count or outcome.error:
                    found.append(outcome)
            found += [v for i in indexes if (v := _index(pg, tp, i)) is not None]
            pg.execute(f"DROP TABLE pg_temp.{quote(tp.target)}")
    except psycopg.Error as exc:
        if _lost(exc):
            raise
        return [], set()  # the values could not be loaded: SQLite's evaluation decides
    return found, done


def _index(pg: psycopg.Connection, tp: TablePlan, post: PostObject) -> Violation | None:
    """The index built on the temporary table (``ON "t"`` finds it first): a duplicate key
    or a value the expression fails on is a violation; any other error (a column not
    recognised) is left to the run."""
    try:
        with pg.transaction():
            pg.execute(post.sql)
    except psycopg.Error as exc:
        if _lost(exc):
            raise
        state = exc.sqlstate or ""
        if state == "23505" or state.startswith("22"):
            detail = getattr(getattr(exc, "diag", None), "message_detail", None)
            error = _message(exc) + (f" ({detail})" if detail else "")
            return Violation(tp.target, post.name, post.sql, 0, None, error)
    return None


def _lost(exc: psycopg.Error) -> bool:
    from emrops.migrate.trial import not_the_statements

    return not_the_statements(exc)


def _violations(
    pg: psycopg.Connection, tp: TablePlan, name: str, expr: str, keys: list[str]
) -> Violation | None:
    """The rows ``expr`` is false for (NULL passes, as in a CHECK), counted, with the first
    key; a data error evaluating it is a violation too (the ALTER TABLE would fail on it);
    None when the query does not compile here (a column not recognised)."""
    key = ", ".join(keys)
    sql = (
        f"SELECT count(*) OVER (), {key} FROM pg_temp.{quote(tp.target)} AS {quote(tp.target)} "
        f"WHERE NOT ({expr}) ORDER BY {key} LIMIT 1"
    )
    try:
        with pg.transaction():
            row = pg.execute(sql).fetchone()
    except psycopg.Error as exc:
        if _lost(exc):
            raise
        state = exc.sqlstate or ""
        if state.startswith("22"):  # the expression fails on a value: so would the run
            return Violation(tp.target, name, expr, 0, None, _message(exc))
        return None
    if row is None:
        return Violation(tp.target, name, expr, 0, None)
    names = [k[1:-1].replace('""', '"') for k in keys]  # as the plan names columns
    first = row[1] if len(keys) == 1 else dict(zip(names, row[1:], strict=True))
    return Violation(tp.target, name, expr, int(row[0]), first)


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return (primary or str(exc).strip().splitlines()[0]).strip()


def describe(v: Violation) -> str:
    if v.error:
        return f"PostgreSQL cannot evaluate CHECK ({v.sql}) on the source rows: {v.error}"
    return (
        f"{v.count} source row(s) violate CHECK ({v.sql}) as PostgreSQL evaluates it; "
        f"first key {v.key}"
    )
