"""Rewrite a parsed, type-annotated SQLite expression tree so PostgreSQL gives SQLite's answer.

The tree comes from sqlglot (read as SQLite, qualified and annotated with the target's column
types by ``catalog``). Each rule is one row in ``RULES``: the node class it applies to and a
function returning the replacement (or None to keep the node). Rules run bottom-up, so a rule
sees its operands already rewritten and typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from emrops.migrate.sql import dates
from emrops.migrate.sql.coerce import fill, to_integer, to_number, to_text, typed
from emrops.migrate.sql.functions import (
    ANONYMOUS,
    group_concat,
    hex_,
    json_extract,
    json_min_max,
    json_object,
    length,
    round_,
    strpos,
    substr,
    typeof,
    unicode_,
)
from emrops.migrate.sql.types import is_number, kind


def _binary_sides(node: exp.Binary) -> tuple[exp.Expr, exp.Expr]:
    return node.this, node.expression


def _utc(node: exp.Expr) -> exp.Expr:
    """Text holding a timestamp as the UTC ``timestamptz`` SQLite's text means; a column's
    text is read as SQLite reads it (NULL where it is not a time, see dates.py), where a CAST
    raised on the first such row."""
    if not isinstance(node, exp.Literal):
        return typed(fill(f"({dates.TEXT_TIME}) AT TIME ZONE 'UTC'", x=node), "timestamptz")
    return typed(
        fill("CAST(CAST(__x AS TEXT) AS TIMESTAMP) AT TIME ZONE 'UTC'", x=node), "timestamptz"
    )


def collate(node: exp.Collate) -> exp.Expr | None:
    """SQLite's collations by what they do: NOCASE folds ASCII case (a comparison then folds
    both sides), RTRIM ignores trailing spaces, BINARY is PostgreSQL's "C" order."""
    name = node.expression.name.upper() if node.expression is not None else ""
    item = node.parent if isinstance(node.parent, exp.Alias) else node
    select = item.parent
    if isinstance(select, exp.Select) and any(e is item for e in select.expressions):
        # an output column: its value is the operand (a collation only compares and
        # orders), where lower()/rtrim() changed it; SELECT DISTINCT over it would need
        # SQLite's pick of one spelling per group, so the collation stays and PostgreSQL
        # refuses it (the view is named)
        if select.args.get("distinct") and name in ("NOCASE", "RTRIM"):
            return None
        return node.this
    if name == "NOCASE":
        new = typed(fill("LOWER(__x)", x=to_text(node.this)), "text")
        new.meta["nocase"] = True
        return new
    if name == "RTRIM":
        return typed(fill("RTRIM(__x)", x=to_text(node.this)), "text")
    if name == "BINARY":
        return exp.Collate(this=node.this, expression=exp.to_identifier("C", quoted=True))
    return None


def compare(node: exp.Binary) -> exp.Expr | None:
    """SQLite's comparison affinity: a TEXT column against a number compares as text, a
    boolean column against 0/1 is a boolean, text against a numeric column is a number;
    text against a timestamp column is a UTC timestamp (whatever the session's zone)."""
    left, right = _binary_sides(node)
    if left.meta.get("nocase") and not right.meta.get("nocase"):
        node.set("expression", fill("LOWER(__x)", x=to_text(right)))
        return None
    if right.meta.get("nocase") and not left.meta.get("nocase"):
        node.set("this", fill("LOWER(__x)", x=to_text(left)))
        return None
    lk, rk = kind(left), kind(right)
    if lk == "timestamp" and rk in ("text", "literal_text", "unknown"):
        node.set("expression", _utc(right))
    elif rk == "timestamp" and lk in ("text", "literal_text", "unknown"):
        node.set("this", _utc(left))
    elif lk == "boolean" and isinstance(right, exp.Literal) and right.this in ("0", "1"):
        node.set("expression", exp.Boolean(this=right.this == "1"))
    elif rk == "boolean" and isinstance(left, exp.Literal) and left.this in ("0", "1"):
        node.set("this", exp.Boolean(this=left.this == "1"))
    elif lk == "text" and isinstance(right, exp.Literal) and not right.is_string:
        node.set("expression", exp.Literal.string(right.this))
    elif rk == "text" and isinstance(left, exp.Literal) and not left.is_string:
        node.set("this", exp.Literal.string(left.this))
    elif lk == "text" and rk in ("integer", "real", "numeric"):
        node.set("expression", to_text(right))
    elif rk == "text" and lk in ("integer", "real", "numeric"):
        node.set("this", to_text(left))
    elif lk == "boolean" and rk in ("integer", "numeric"):
        node.set("this", to_number(left))
    elif rk == "boolean" and lk in ("integer", "numeric"):
        node.set("expression", to_number(right))
    return None


_TEXTUAL = ("text", "literal_text")


def binary_order(node: exp.Expr) -> exp.Expr:
    """``node COLLATE "C"`` when it is text: SQLite orders text by its bytes (BINARY), a
    target created with en_US or ICU collation by language rules ('a' < 'B' < 'b', '_x'
    after 'Z'), which changed a view's ORDER BY ... LIMIT, its max()/min() and a text
    comparison's answer. Equality is the same under both, so only ordering gets it."""
    if kind(node) != "text" or isinstance(node, exp.Collate):
        return node
    if isinstance(node, exp.Column) and not node.table:
        return node  # an output column's name: PostgreSQL takes it only bare
    return exp.Collate(this=node, expression=exp.to_identifier("C", quoted=True))


def order_compare(node: exp.Binary) -> exp.Expr | None:
    """<, <=, >, >= as ``compare``, over text in SQLite's byte order."""
    compare(node)
    left, right = _binary_sides(node)
    if (
        kind(left) in _TEXTUAL
        and kind(right) in _TEXTUAL
        and not isinstance(left, exp.Collate)
        and not isinstance(right, exp.Collate)
    ):
        # one side's explicit collation decides (the column's, or a literal's: 'a' < 'B')
        side = "expression" if kind(left) != "text" and kind(right) == "text" else "this"
        node.set(side, _collated(node.args[side]))
    return None


def _collated(node: exp.Expr) -> exp.Expr:
    return exp.Collate(this=node, expression=exp.to_identifier("C", quoted=True))


def ordered(node: exp.Ordered) -> exp.Expr | None:
    """ORDER BY text in SQLite's byte order. A key naming an output column stays that bare
    name (PostgreSQL takes no expression of it, and a DISTINCT or UNION query orders by
    output columns only): the output column gets the byte order instead."""
    key = node.this
    if isinstance(key, exp.Column) and not key.table:
        query = node.parent.parent if isinstance(node.parent, exp.Order) else None
        if query is not None:
            _collate_output(query, key.name)
        return None
    new = binary_order(key)
    if new is not key:
        node.set("this", new)
    return None


def _collate_output(query: exp.Expr, name: str) -> None:
    """The output column ``name`` of a DISTINCT or UNION query (its first SELECT's) in byte
    order: ORDER BY names it bare and sorts by that column's collation."""
    while isinstance(query, exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Select):
        return
    named = [e for e in query.expressions if e.alias_or_name == name]
    if len(named) != 1:
        return
    target = named[0]
    inner = target.this if isinstance(target, exp.Alias) else target
    if kind(inner) != "text" or isinstance(inner, exp.Collate):
        return
    binary = exp.to_identifier("C", quoted=True)
    # wrapped in place, not copied: rules still due on the expression reach it
    if isinstance(target, exp.Alias):
        target.set("this", exp.Collate(this=inner, expression=binary))
    else:
        holder = exp.Alias(alias=exp.to_identifier(name))
        target.replace(holder)
        holder.set("this", exp.Collate(this=target, expression=binary))


def min_max(node: exp.Max | exp.Min) -> exp.Expr | None:
    """max()/min() of text in SQLite's byte order; of json_extract() in SQLite's order."""
    if kind(node.this) == "text" and not node.expressions:
        node.set("this", binary_order(node.this))
        return None
    return json_min_max(node)


def greatest(node: exp.Expr) -> exp.Expr | None:
    """SQLite's max(a, b, ...)/min(...) are NULL when any argument is; GREATEST/LEAST skip
    NULLs; text compares by its bytes."""
    node.set("this", binary_order(node.this))
    args = [node.this, *node.expressions]
    test = " OR ".join(f"__a{i} IS NULL" for i in range(len(args)))
    new = fill(
        f"CASE WHEN {test} THEN NULL ELSE __n END",
        n=node.copy(),
        **{f"a{i}": a for i, a in enumerate(args)},
    )
    new.type = node.type
    return new


def between(node: exp.Between) -> exp.Expr | None:
    for bound in ("low", "high"):
        probe = exp.EQ(this=node.this, expression=node.args[bound])
        compare(probe)
        node.set("this", probe.this)
        node.set(bound, probe.expression)
    if all(kind(node.args[a]) in _TEXTUAL for a in ("this", "low", "high")):
        node.set("this", binary_order(node.this))
    return None


def paren(node: exp.Paren) -> exp.Expr | None:
    node.type = node.this.type
    return None


def arithmetic(node: exp.Binary) -> exp.Expr | None:
    """SQLite converts text (and booleans stored as 0/1) to numbers in arithmetic, and
    computes with a real literal (2.0, 1.1) in doubles where PostgreSQL would use numeric."""
    for arg in ("this", "expression"):
        lit = node.args.get(arg)
        if isinstance(lit, exp.Literal) and not lit.is_string and not lit.is_int:
            node.set(arg, typed(exp.cast(lit.copy(), "double precision"), "double precision"))
    left, right = _binary_sides(node)
    if isinstance(node, exp.Mod) and not (kind(left) == kind(right) == "integer"):
        # SQLite's % casts both operands to integers (7.5 % 3 is 1.0, 7 % 0.5 is NULL); the
        # result is a real when an operand is one
        real = "real" in (kind(left), kind(right)) or "numeric" in (kind(left), kind(right))
        mod = fill("__a % NULLIF(__b, 0)", a=to_integer(left), b=to_integer(right))
        if real:
            return typed(exp.cast(mod, "double precision"), "double precision")
        return typed(mod, "bigint")
    if is_number(left) and is_number(right):
        return None
    node.set("this", to_number(left))
    node.set("expression", to_number(right))
    return typed(node, "numeric")


def concat(node: exp.DPipe) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    node.set("expression", to_text(node.expression))
    return typed(node, "text")


def cast(node: exp.Cast) -> exp.Expr | None:
    """CAST(x AS INTEGER) truncates toward zero in SQLite and text casts take a prefix."""
    to = node.to.this
    inner = node.this
    if isinstance(inner, exp.Literal) and inner.this.startswith("__emrops_"):
        return None  # a typed stand-in for NEW.col / OLD.col (catalog.query)
    T = exp.DataType.Type
    if to in (T.INT, T.BIGINT, T.SMALLINT, T.TINYINT):
        return to_integer(inner)
    if to in (T.DOUBLE, T.FLOAT):
        return typed(exp.cast(to_number(inner), "double precision"), "double precision")
    if to == T.DECIMAL and not node.to.expressions:
        return typed(to_number(inner), "numeric")
    if to in (T.TEXT, T.VARCHAR, T.CHAR):
        return typed(to_text(inner), "text")
    return None


_UPPER_ASCII = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER_ASCII = _UPPER_ASCII.lower()
_FOLD = str.maketrans(_UPPER_ASCII, _LOWER_ASCII)


def ascii_case(node: exp.Expr, upper: bool) -> exp.Expr:
    """SQLite's upper()/lower() (without ICU): ASCII letters only ('é' stays 'é'), where
    PostgreSQL's fold every letter (a CHECK (s = upper(s)) then failed on 'éCOLE')."""
    src, dst = (_LOWER_ASCII, _UPPER_ASCII) if upper else (_UPPER_ASCII, _LOWER_ASCII)
    return typed(fill(f"TRANSLATE(__x, '{src}', '{dst}')", x=to_text(node)), "text")


def case_fold(node: exp.Expr) -> exp.Expr | None:
    """upper()/lower() as SQLite folds (ASCII only), except in an index element, which keeps
    PostgreSQL's own so that the app's queries use the index (the plan then builds a unique
    one over the source rows and names keys it folds together)."""
    if node.root().meta.get("native_case"):
        node.set("this", to_text(node.this))
        return None
    return ascii_case(node.this, isinstance(node, exp.Upper))


def like(node: exp.Like) -> exp.Expr | None:
    """SQLite's LIKE is case-insensitive for ASCII letters only ('É' LIKE 'é' is false; ILIKE
    folds every letter) and has no escape character by default."""
    pattern = node.expression
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        folded: exp.Expr = exp.Literal.string(pattern.this.translate(_FOLD))
    else:
        folded = ascii_case(pattern, False)
    new = exp.Like(this=ascii_case(node.this, False), expression=folded)
    if isinstance(pattern, exp.Literal) and "\\" in pattern.this:
        return typed(exp.Escape(this=new, expression=exp.Literal.string("")), "boolean")
    return typed(new, "boolean")


def glob(node: exp.Glob) -> exp.Expr | None:
    """GLOB is case-sensitive with * ? and [...] classes: a POSIX regex match."""
    pattern = node.expression
    if isinstance(pattern, exp.Literal):
        return typed(
            exp.RegexpLike(
                this=to_text(node.this), expression=exp.Literal.string(glob_regex(pattern.this))
            ),
            "boolean",
        )
    return None


def glob_regex(pattern: str) -> str:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


def in_list(node: exp.In) -> exp.Expr | None:
    """``x IN tablename`` and an empty ``IN ()``, which PostgreSQL does not accept."""
    field = node.args.get("field")
    if field is not None:
        table = exp.Table(this=field.this.copy() if isinstance(field, exp.Column) else field)
        if isinstance(field, exp.Table):
            table = field.copy()
        node.set("field", None)
        node.set("query", exp.Subquery(this=exp.select("*").from_(table)))
        return None
    if not node.expressions and node.args.get("query") is None and node.args.get("unnest") is None:
        return exp.false()
    return None


def in_values(node: exp.In) -> exp.Expr | None:
    """``b IN (0, 1)`` on a boolean column (SQLAlchemy before 1.4 writes this CHECK for every
    Boolean): the 0/1 literals become false/true; a list with other numbers compares the
    boolean as the 0/1 SQLite stores."""
    if kind(node.this) != "boolean" or node.args.get("query") is not None:
        return None
    items = node.expressions
    numbers = [e for e in items if isinstance(e, exp.Literal) and not e.is_string]
    if not numbers:
        return None
    if len(numbers) == len(items) and all(e.this in ("0", "1") for e in numbers):
        node.set("expressions", [exp.Boolean(this=e.this == "1") for e in items])
    else:
        node.set("this", to_number(node.this))
    return typed(node, "boolean")


def aggregate_numeric(node: exp.Expr) -> exp.Expr | None:
    """sum/avg over text (SQLite coerces each value) or booleans (0/1)."""
    arg = node.this
    if arg is not None and not is_number(arg) and not isinstance(arg, exp.Star):
        node.set("this", to_number(arg))
    return None


def anonymous(node: exp.Anonymous) -> exp.Expr | None:
    rule = ANONYMOUS.get(node.name.lower())
    return rule(node) if rule else None


def truth(node: exp.Expr) -> exp.Expr:
    """A value where SQLite wants a truth value: numbers are true when not 0, text by its
    numeric prefix (PostgreSQL wants a boolean)."""
    k = kind(node)
    if k in ("integer", "real", "numeric"):
        return typed(fill("__x <> 0", x=node), "boolean")
    if k in ("text", "literal_text"):
        return typed(fill("__x <> 0", x=to_number(node)), "boolean")
    return node


def condition(node: exp.Expr) -> exp.Expr | None:
    """WHERE, HAVING, CASE WHEN, AND, OR and NOT take truth values; the WHEN values of a
    simple ``CASE x WHEN v`` are compared with ``x`` instead (SQLite's comparison rules)."""
    case = node.parent
    if isinstance(node, exp.If) and isinstance(case, exp.Case) and case.args.get("this"):
        probe = exp.EQ(this=case.this.copy(), expression=node.this)
        compare(probe)
        node.set("this", probe.expression)
        if probe.this.sql() != case.this.sql():  # the operand took a conversion
            case.set("this", probe.this)
        return None
    for arg in ("this", "expression"):
        child = node.args.get(arg)
        if isinstance(child, exp.Expr) and not (isinstance(node, exp.If) and arg != "this"):
            node.set(arg, truth(child))
    if isinstance(node, exp.Connector | exp.Not):
        node.type = exp.DataType.build("boolean")
    return None


def select(node: exp.Select) -> exp.Expr | None:
    """``LIMIT -1`` (no limit) and bare columns in an aggregate query: SQLite takes them from
    some row of the group, PostgreSQL wants them grouped, so they become one value of the
    group (``(ARRAY_AGG(x))[1]``) unless the group fixes them (grouped by that table's key)."""
    limit = node.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Neg):
        node.set("limit", None)
    group = node.args.get("group")
    aggregates = [
        a
        for e in node.expressions
        for a in e.find_all(exp.AggFunc)
        if _owner(a) is node and not isinstance(a.parent, exp.Window)
    ]
    if group is None and not aggregates:
        return None
    grouped = {g.sql() for g in group.expressions} if group is not None else set()
    grouped_columns = {
        (g.table, g.name)
        for g in (group.expressions if group is not None else [])
        if isinstance(g, exp.Column)
    }
    fixed: set[str] = set()  # aliases whose primary key is grouped
    for table in node.find_all(exp.Table):
        key = table.meta.get("key")
        if _owner(table) is node and key:
            alias = table.alias_or_name
            if all((alias, k) in grouped_columns for k in key):
                fixed.add(alias)
    parts = list(node.expressions)
    for arg in ("having", "order"):
        if node.args.get(arg) is not None:
            parts.append(node.args[arg])
    for part in parts:
        for col in list(part.find_all(exp.Column)):
            if _owner(col) is not node or col.table in fixed:
                continue
            if any(_owner(a) is node for a in _ancestors(col, part, exp.AggFunc)):
                continue
            if any(a.sql() in grouped for a in _ancestors(col, part, exp.Expr)):
                continue
            if isinstance(col.parent, exp.Ordered) and col.name in {
                e.alias_or_name for e in node.expressions
            }:
                continue  # ORDER BY an output column
            col.replace(_bare(col, aggregates))
    return None


def _bare(col: exp.Expr, aggregates: list[exp.Expr]) -> exp.Expr:
    """A bare column's value in an aggregate query: with one min() or max() (count() and
    others beside it do not matter), SQLite takes it from the row holding that minimum or
    maximum (a documented guarantee apps rely on: the name beside max(score)); otherwise from
    some row of the group."""
    extremes = [a for a in aggregates if isinstance(a, exp.Max | exp.Min)]
    if len(extremes) == 1:
        agg = extremes[0]
        if agg.this is not None and not agg.expressions:
            order = "DESC" if isinstance(agg, exp.Max) else "ASC"
            return fill(
                f"(ARRAY_AGG(__x ORDER BY __k {order} NULLS LAST))[1]", x=col, k=agg.this.copy()
            )
    return fill("(ARRAY_AGG(__x))[1]", x=col)


def _owner(node: exp.Expr) -> exp.Expr | None:
    return node.find_ancestor(exp.Select)


def _ancestors(node: exp.Expr, top: exp.Expr, cls: type) -> list[exp.Expr]:
    out = []
    cur: exp.Expr | None = node
    while cur is not None:
        if isinstance(cur, cls):
            out.append(cur)
        if cur is top:
            break
        cur = cur.parent
    return out


def prepare(tree: exp.Expr) -> exp.Expr:
    """Rewrites needed before sqlglot can qualify the tree (``x IN tablename``)."""
    for node in list(tree.find_all(exp.In)):
        new = in_list(node)
        if new is not None:
            if node is tree:
                return new
            node.replace(new)
    return tree


# (node class, rule): the first matching row applies
RULES: list[tuple[type[exp.Expr], Callable[..., exp.Expr | None]]] = [
    (exp.EQ, compare),
    (exp.NEQ, compare),
    (exp.GT, order_compare),
    (exp.GTE, order_compare),
    (exp.LT, order_compare),
    (exp.LTE, order_compare),
    (exp.Ordered, ordered),
    (exp.Collate, collate),
    (exp.Where, condition),
    (exp.Having, condition),
    (exp.And, condition),
    (exp.Or, condition),
    (exp.Not, condition),
    (exp.If, condition),
    (exp.Select, select),
    (exp.Between, between),
    (exp.In, in_values),
    (exp.Greatest, greatest),
    (exp.Least, greatest),
    (exp.Paren, paren),
    (exp.Add, arithmetic),
    (exp.Sub, arithmetic),
    (exp.Mul, arithmetic),
    (exp.Div, arithmetic),
    (exp.Mod, arithmetic),
    (exp.DPipe, concat),
    (exp.Cast, cast),
    (exp.Like, like),
    (exp.Upper, case_fold),
    (exp.Lower, case_fold),
    (exp.Glob, glob),
    (exp.Sum, aggregate_numeric),
    (exp.Avg, aggregate_numeric),
    (exp.GroupConcat, group_concat),
    (exp.JSONExtract, json_extract),
    (exp.JSONExtractScalar, json_extract),
    (exp.Max, min_max),
    (exp.Min, min_max),
    (exp.StrPosition, strpos),
    (exp.Substring, substr),
    (exp.Round, round_),
    (exp.Length, length),
    (exp.Hex, hex_),
    (exp.Unicode, unicode_),
    (exp.JSONObject, json_object),
    (exp.LowerHex, hex_),
    (exp.Typeof, typeof),
    (exp.TimeToStr, dates.time_to_str),
    (exp.Date, dates.date_function),
    (exp.Anonymous, anonymous),
]


def apply(tree: exp.Expr) -> exp.Expr:
    """Apply ``RULES`` bottom-up; returns the (possibly new) root."""
    nodes = list(tree.walk())
    root = tree
    for node in reversed(nodes):
        for cls, rule in RULES:
            if type(node) is cls:
                new = rule(node)
                if new is not None and new is not node:
                    if node is root:
                        root = new
                    else:
                        node.replace(new)
                break
    return root
