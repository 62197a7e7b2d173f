"""The one entry point of SQL translation: a ``Catalog`` of the target's relations.

``plan`` fills it with every table (SQLite name -> PostgreSQL name and type of each column)
and asks it to translate CHECK and index expressions, views (added to the catalog in turn, so
later views can use them) and triggers. SQLite SQL is parsed by sqlglot, qualified against the
catalog (so every column is known with its table and type), rewritten by ``rewrite.RULES``
and printed as PostgreSQL with every identifier quoted under its target name.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import traverse_scope
    from sqlglot.schema import MappingSchema

    from emrops.migrate.sql import rewrite

ROWID_NAMES = ("rowid", "oid", "_rowid_")

# sqlglot is imported at the first translation (every one goes through ``guarded``), not with
# this module: the import is ~90 ms of a migration's start-up, and a database whose indexes
# name plain columns and that has no view, trigger, CHECK or expression needs none of it.
_loading = threading.Lock()


def _load() -> None:
    global sqlglot, exp, SqlglotError, annotate_types, qualify, traverse_scope, MappingSchema
    global rewrite
    if "rewrite" in globals():
        return
    with _loading:
        if "rewrite" in globals():
            return
        import sqlglot as _sqlglot
        from sqlglot import exp as _exp
        from sqlglot.errors import SqlglotError as _error
        from sqlglot.optimizer.annotate_types import annotate_types as _annotate
        from sqlglot.optimizer.qualify import qualify as _qualify
        from sqlglot.optimizer.scope import traverse_scope as _traverse
        from sqlglot.schema import MappingSchema as _schema

        from emrops.migrate.sql import rewrite as _rewrite

        sqlglot, exp, SqlglotError, annotate_types = _sqlglot, _exp, _error, _annotate  # type: ignore[misc]
        qualify, traverse_scope, MappingSchema = _qualify, _traverse, _schema  # type: ignore[misc]
        rewrite = _rewrite  # last: its presence says the rest is there


class TranslationError(Exception):
    """SQL that sqlglot cannot parse, or that names something the catalog does not hold."""


# A shape the parser or a rule does not handle must not stop a plan: the object is then sent
# as SQLite wrote it and PostgreSQL reports it (with the SQL) when it is built. (sqlglot's own
# errors, SqlglotError, are added to these once it is loaded.)
FAILURES = (ValueError, KeyError, IndexError, AttributeError, TypeError)

F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Turn any failure inside translation into TranslationError (and load sqlglot first)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _load()
        try:
            return fn(*args, **kwargs)
        except TranslationError:
            raise
        except (SqlglotError, *FAILURES, RecursionError) as exc:
            raise TranslationError(f"{type(exc).__name__}: {exc}") from None

    return cast(F, wrapper)


@dataclass
class Relation:
    source: str
    target: str
    columns: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower -> (name, type)
    names: list[str] = field(default_factory=list)  # SQLite column names, in order
    rowid: str | None = None  # the column aliasing the rowid
    key: list[str] = field(default_factory=list)  # primary-key columns, lower-cased
    # lower-cased names of columns that differ only in the case of non-ASCII letters
    clashing: set[str] = field(default_factory=set)


def _ascii_fold(name: str) -> str:
    """A name as SQLite compares identifiers: only ASCII letters fold (Ä and ä differ)."""
    return name.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


@dataclass
class Translated:
    sql: str
    columns: list[tuple[str, str]]  # (output name, PostgreSQL type) of a SELECT


class Catalog:
    def __init__(self) -> None:
        self.relations: dict[str, Relation] = {}
        # lower-cased relation names that stand for two relations SQLite keeps apart (names
        # differing only in the case of non-ASCII letters: "Äpfel" and "äpfel"); this
        # catalog, and sqlglot's, fold them together, so SQL naming them is not translated
        self.clashing: set[str] = set()

    def add(
        self,
        source: str,
        target: str,
        columns: list[tuple[str, str, str]],
        rowid: str | None = None,
        key: list[str] | None = None,
    ) -> None:
        """A table or view: its SQLite name, PostgreSQL name, (sqlite, target, pg type), and
        the SQLite column that aliases the rowid (``rowid``, ``oid``, ``_rowid_`` mean it)."""
        rel = Relation(source, target)
        for name, tname, pg_type in columns:
            if name.lower() in rel.columns:
                rel.clashing.add(name.lower())
            rel.columns[name.lower()] = (tname, pg_type)
            rel.names.append(name)
        rel.rowid = rowid
        rel.key = [k.lower() for k in key or []]
        earlier = self.relations.get(source.lower())
        if earlier is not None and _ascii_fold(earlier.source) != _ascii_fold(source):
            self.clashing.add(source.lower())
        self.relations[source.lower()] = rel

    def target(self, source: str) -> str:
        return self.relations[source.lower()].target

    def columns_of(self, table: str) -> list[tuple[str, str]]:
        """(PostgreSQL name, type) of every column of a table (none for an unknown one)."""
        rel = self.relations.get(table.lower())
        return list(rel.columns.values()) if rel else []

    def column(self, table: str, column: str) -> tuple[str, str] | None:
        """(PostgreSQL name, type) of a column, None when the table has none such;
        TranslationError when the name stands for two (see :attr:`clashing`)."""
        rel = self.relations.get(table.lower())
        if rel is not None and (table.lower() in self.clashing or column.lower() in rel.clashing):
            raise TranslationError(
                f"names {column!r} of {table!r}, which SQLite tells apart from a name "
                "differing only in the case of non-ASCII letters"
            )
        return rel.columns.get(column.lower()) if rel else None

    def _schema(self, tree: exp.Expr) -> MappingSchema:
        """The relations ``tree`` names (a schema of every table costs time per object)."""
        names = {t.name.lower() for t in tree.find_all(exp.Table)}
        clash = sorted(names & self.clashing) + sorted(
            c.name
            for c in tree.find_all(exp.Column)
            for key in names
            if key in self.relations and c.name.lower() in self.relations[key].clashing
        )
        if clash:
            raise TranslationError(
                f"names {clash[0]!r}, which stands for two names SQLite tells apart (they "
                "differ only in the case of non-ASCII letters) and the translation would "
                "confuse"
            )
        mapping: dict[str, object] = {
            key: {col: _sqlglot_type(t) for col, (_n, t) in rel.columns.items()}
            for key, rel in self.relations.items()
            if key in names
        }
        return MappingSchema(mapping, dialect="sqlite", normalize=True)

    # -- expressions of one table: CHECK, index WHERE, index elements, trigger statements ---
    @guarded
    def expr(
        self, sql: str, table: str, trigger: str | None = None, assign: str | None = None
    ) -> str:
        """A SQLite expression over ``table``'s columns, as PostgreSQL (unqualified columns).

        With ``trigger`` (the table a trigger is on), ``NEW.col`` and ``OLD.col`` are that
        table's columns, printed as PL/pgSQL's ``"new"."col"``."""
        try:
            node = sqlglot.parse_one(sql, read="sqlite", into=exp.Condition)
        except SqlglotError as exc:
            raise TranslationError(f"cannot parse {sql!r}: {exc}") from None
        return self.expr_tree(node, table, trigger, assign)

    @guarded
    def expr_tree(
        self,
        node: exp.Expr,
        table: str,
        trigger: str | None = None,
        assign: str | None = None,
    ) -> str:
        rel = self.relations.get(table.lower())
        if rel is None:
            raise TranslationError(f"unknown table {table}")
        node = node.copy()
        known = set(rel.columns)
        if trigger is not None:
            known |= set(self.relations[trigger.lower()].columns)
        _unknown_quoted_to_strings(node, known)
        node = rewrite.prepare(node)
        for col in node.find_all(exp.Column):
            if not col.table and col.find_ancestor(exp.Select) is None:
                col.set("table", exp.to_identifier("_t"))
            owner = {"_t": rel, "new": trigger, "old": trigger}.get(col.table.lower())
            if isinstance(owner, str):
                owner = self.relations[owner.lower()]
            if (
                isinstance(owner, Relation)
                and col.name.lower() in ROWID_NAMES
                and col.name.lower() not in owner.columns
            ):
                if owner.rowid is None:
                    raise TranslationError(
                        f"uses the rowid of {owner.source}, which has no INTEGER PRIMARY KEY "
                        "to stand for it in PostgreSQL"
                    )
                col.set("this", exp.to_identifier(owner.rowid))
        select = exp.select(exp.alias_(node, "_e")).from_(
            exp.alias_(_quoted(table), "_t", table=True)
        )
        # an index element keeps PostgreSQL's own lower()/upper(): the app's queries on
        # PostgreSQL (WHERE lower(email) = ...) must find the index (see rewrite.case_fold)
        select.meta["native_case"] = assign == "index"
        if trigger is not None:
            for side in ("new", "old"):
                select = select.join(
                    exp.alias_(_quoted(trigger), side, table=True), join_type="cross"
                )
        tree = self._qualified(select)
        for col in tree.find_all(exp.Column):
            if col.table == "_t":
                col.set("table", None)
        value = tree.expressions[0].this
        if isinstance(value, exp.Query):  # alias_() unwrapped a scalar subquery's parentheses
            value = exp.Subquery(this=value)
        if assign == "index":
            pass
        elif assign == "condition":  # a truth value, as SQLite takes one (5 is true)
            value = rewrite.truth(value)
        elif assign is not None:  # written to a column of that type (see coerce.to_column)
            from emrops.migrate.sql.coerce import to_column

            value = to_column(value, assign)
        return value.sql(dialect="postgres", identify=True)

    def _qualified(self, tree: exp.Expr) -> exp.Expr:
        schema = self._schema(tree)
        try:
            tree = qualify(
                tree,
                schema=schema,
                dialect="sqlite",
                quote_identifiers=False,
                validate_qualify_columns=True,
            )
            tree = annotate_types(tree, schema=schema, dialect="sqlite")
        except SqlglotError as exc:
            raise TranslationError(str(exc)) from None
        self._rename(tree)
        return rewrite.apply(tree)

    # -- triggers -------------------------------------------------------------------------------
    def trigger(self, sql: str, target: str, function: str) -> Any:
        """A CREATE TRIGGER as a PL/pgSQL function plus trigger (``triggers.Translated``);
        TranslationError names why a trigger is outside the translated shapes."""
        _load()
        from emrops.migrate.sql import triggers  # triggers builds on this module

        return triggers.translate(self, sql, target, function)

    # -- views ----------------------------------------------------------------------------------
    @guarded
    def view(
        self, name: str, target: str, select_sql: str, columns: list[tuple[str, str]]
    ) -> Translated:
        """A view's SELECT as PostgreSQL, its output columns named as SQLite names them
        (``columns``: SQLite's name from ``PRAGMA table_info`` on the view, and that name as
        the target spells it, shortened past 63 bytes). The view joins the catalog."""
        tree = self._query(select_sql)
        top = tree
        while isinstance(top, exp.SetOperation):
            top = top.this
        out: list[tuple[str, str]] = []
        renamed: dict[str, str] = {}
        if isinstance(top, exp.Select) and len(top.expressions) == len(columns):
            for e, (_src, tname) in zip(list(top.expressions), columns, strict=True):
                inner = e.this if isinstance(e, exp.Alias) else e
                t = inner.type.sql("postgres") if inner.type is not None else "text"
                out.append((tname, _pg_type(t)))
                renamed[e.alias_or_name.lower()] = tname
                e.replace(exp.alias_(inner, exp.to_identifier(tname, quoted=True)))
        else:
            out = [(t, "text") for _s, t in columns]
        order = tree.args.get("order")
        if isinstance(tree, exp.SetOperation) and order is not None:
            for col in order.find_all(exp.Column):  # ORDER BY of a UNION names output columns
                if not col.table and col.name.lower() in renamed:
                    col.set("this", exp.to_identifier(renamed[col.name.lower()], quoted=True))
        self.add(
            name, target, [(s, t, typ) for (s, t), (_t, typ) in zip(columns, out, strict=True)]
        )
        return Translated(tree.sql(dialect="postgres", identify=True), out)

    @guarded
    def query(self, select: exp.Expr, trigger: str | None = None) -> str:
        """A SQLite SELECT over the catalog as PostgreSQL; with ``trigger``, ``NEW.col`` and
        ``OLD.col`` are that table's columns (a trigger body's INSERT ... SELECT)."""
        tree = select.copy()
        marks: dict[str, exp.Column] = {}
        if trigger is not None:
            rel = self.relations[trigger.lower()]
            for col in list(tree.find_all(exp.Column)):
                side = col.table.lower()
                hit = rel.columns.get(col.name.lower())
                if side in ("new", "old") and hit is not None:
                    # typed stand-in while sqlglot resolves the query's own tables
                    mark = f"__emrops_{len(marks)}"
                    marks[mark] = exp.column(hit[0], side, quoted=True)
                    stand_in = exp.cast(exp.Literal.string(mark), _sqlglot_type(hit[1]))
                    col.replace(stand_in)
        out = self._tree(tree)
        for cast_node in list(out.find_all(exp.Cast)):
            lit = cast_node.this
            if isinstance(lit, exp.Literal) and lit.this in marks:
                cast_node.replace(marks[lit.this].copy())
        return out.sql(dialect="postgres", identify=True)

    def _query(self, sql: str) -> exp.Expr:
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except SqlglotError as exc:
            raise TranslationError(f"sqlglot cannot parse it: {exc}") from None
        return self._tree(tree)

    def _tree(self, tree: exp.Expr) -> exp.Expr:
        known = {c for rel in self.relations.values() for c in rel.columns}
        known |= {a.alias.lower() for a in tree.find_all(exp.Alias)}
        _unknown_quoted_to_strings(tree, known)
        return self._qualified(rewrite.prepare(tree))

    def _rename(self, tree: exp.Expr) -> None:
        """Source names -> target names, for tables and their columns in every scope."""
        for scope in traverse_scope(tree):
            for col in scope.columns:
                src = scope.sources.get(col.table)
                if isinstance(src, exp.Table):
                    rel = self.relations.get(src.name.lower())
                    hit = rel.columns.get(col.name.lower()) if rel else None
                    if hit:
                        col.set("this", exp.to_identifier(hit[0], quoted=True))
            for source in scope.sources.values():
                if isinstance(source, exp.Table):
                    rel = self.relations.get(source.name.lower())
                    if rel:
                        source.set("this", exp.to_identifier(rel.target, quoted=True))
                        source.meta["key"] = [
                            rel.columns[k][0] for k in rel.key if k in rel.columns
                        ]


def _unknown_quoted_to_strings(tree: exp.Expr, known: set[str]) -> None:
    """SQLite reads a double-quoted word that names no column as a string literal."""
    for col in list(tree.find_all(exp.Column)):
        ident = col.this
        if (
            isinstance(ident, exp.Identifier)
            and ident.quoted
            and not col.table
            and ident.name.lower() not in known
        ):
            col.replace(exp.Literal.string(ident.name))


def _quoted(name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def _sqlglot_type(pg_type: str) -> exp.DataType:
    return _parsed_type(pg_type).copy()


@functools.lru_cache(maxsize=256)
def _parsed_type(pg_type: str) -> exp.DataType:
    try:
        return exp.DataType.build(pg_type, dialect="postgres")
    except SqlglotError:
        return exp.DataType.build("text")


def _pg_type(t: str) -> str:
    return {"UNKNOWN": "text", "NULL": "text"}.get(t.upper(), t.lower())
