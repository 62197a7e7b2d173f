"""Rewrite a parsed, type-annotated SQLite expression tree so PostgreSQL gives SQLite's answer.

The tree comes from sqlglot (read as SQLite, qualified and annotated with the target's column
types by ``catalog``). Each rule is one row in ``RULES``: the node class it applies to and a
function returning the replacement (or None to keep the node). Rules run bottom-up, so a rule
sees its operands already rewritten and typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import sqlglot
from sqlglot import exp

from emrops.migrate.sql import dates
from emrops.migrate.sql.types import is_number, kind


@cache
def _template(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="postgres")


def fill(sql: str, **args: exp.Expr) -> exp.Expr:
    """A PostgreSQL expression from a template whose columns ``__name`` are the arguments."""
    tree = _template(sql).copy()
    for col in list(tree.find_all(exp.Column)):
        name = col.name
        if name.startswith("__") and not col.table:
            col.replace(_operand(args[name[2:]].copy()))
    if isinstance(tree, exp.Binary | exp.Unary | exp.AtTimeZone):
        tree = exp.Paren(this=tree)  # keeps its meaning wherever it is put
    return tree


def _operand(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Binary | exp.Unary | exp.AtTimeZone) and not isinstance(
        node, exp.Paren
    ):
        typed = node.type
        node = exp.Paren(this=node)
        node.type = typed
    return node


# SQLite's text -> number coercion: the longest numeric prefix, else 0 (NULL stays NULL)
NUMERIC_PREFIX = r"^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)"


def to_number(node: exp.Expr) -> exp.Expr:
    """``node`` as SQLite sees it in arithmetic: numbers unchanged, text coerced."""
    if isinstance(node, exp.Literal) and node.is_string:
        m = re.match(NUMERIC_PREFIX, node.this)
        return exp.Literal.number(m.group(1) if m else 0)
    k = kind(node)
    if k in ("integer", "real", "numeric"):
        return node
    if k == "boolean":
        return _typed(fill("CAST(__x AS INT)", x=node), "int")
    if k in ("text", "unknown"):
        return _typed(
            fill(
                "CASE WHEN __x IS NULL THEN NULL ELSE COALESCE(CAST(SUBSTRING(CAST(__x AS TEXT) "
                f"FROM '{NUMERIC_PREFIX}') AS NUMERIC), 0) END",
                x=node,
            ),
            "numeric",
        )
    return node


def to_text(node: exp.Expr) -> exp.Expr:
    """``node`` as SQLite's text: numbers and booleans printed, text unchanged."""
    k = kind(node)
    if k in ("text", "literal_text"):
        return node
    if isinstance(node, exp.Literal):
        return exp.Literal.string(node.this)
    if k == "boolean":
        return _typed(fill("CAST(CAST(__x AS INT) AS TEXT)", x=node), "text")
    if k == "timestamp":
        return _typed(fill(dates.TEXT_OF_TIMESTAMPTZ, x=node), "text")
    return _typed(exp.cast(node, "text"), "text")


def _typed(node: exp.Expr, type_: str) -> exp.Expr:
    node.type = exp.DataType.build(type_, dialect="postgres")
    return node


def _binary_sides(node: exp.Binary) -> tuple[exp.Expr, exp.Expr]:
    return node.this, node.expression


def _utc(node: exp.Expr) -> exp.Expr:
    """Text holding a timestamp as the UTC ``timestamptz`` SQLite's text means."""
    return _typed(
        fill("CAST(CAST(__x AS TEXT) AS TIMESTAMP) AT TIME ZONE 'UTC'", x=node), "timestamptz"
    )


def collate(node: exp.Collate) -> exp.Expr | None:
    """SQLite's collations by what they do: NOCASE folds ASCII case (a comparison then folds
    both sides), RTRIM ignores trailing spaces, BINARY is PostgreSQL's "C" order."""
    name = node.expression.name.upper() if node.expression is not None else ""
    if name == "NOCASE":
        new = _typed(fill("LOWER(__x)", x=to_text(node.this)), "text")
        new.meta["nocase"] = True
        return new
    if name == "RTRIM":
        return _typed(fill("RTRIM(__x)", x=to_text(node.this)), "text")
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


def between(node: exp.Between) -> exp.Expr | None:
    for bound in ("low", "high"):
        probe = exp.EQ(this=node.this, expression=node.args[bound])
        compare(probe)
        node.set("this", probe.this)
        node.set(bound, probe.expression)
    return None


def paren(node: exp.Paren) -> exp.Expr | None:
    node.type = node.this.type
    return None


def arithmetic(node: exp.Binary) -> exp.Expr | None:
    """SQLite converts text (and booleans stored as 0/1) to numbers in arithmetic."""
    left, right = _binary_sides(node)
    if is_number(left) and is_number(right):
        return None
    node.set("this", to_number(left))
    node.set("expression", to_number(right))
    return _typed(node, "numeric")


def concat(node: exp.DPipe) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    node.set("expression", to_text(node.expression))
    return _typed(node, "text")


def cast(node: exp.Cast) -> exp.Expr | None:
    """CAST(x AS INTEGER) truncates toward zero in SQLite and text casts take a prefix."""
    to = node.to.this
    inner = node.this
    T = exp.DataType.Type
    if to in (T.INT, T.BIGINT, T.SMALLINT, T.TINYINT):
        if kind(inner) == "integer":
            return _typed(exp.cast(inner, "bigint"), "bigint")
        return _typed(fill("CAST(TRUNC(__x) AS BIGINT)", x=to_number(inner)), "bigint")
    if to in (T.DOUBLE, T.FLOAT):
        return _typed(exp.cast(to_number(inner), "double precision"), "double precision")
    if to == T.DECIMAL and not node.to.expressions:
        return _typed(to_number(inner), "numeric")
    if to in (T.TEXT, T.VARCHAR, T.CHAR):
        return _typed(to_text(inner), "text")
    return None


def like(node: exp.Like) -> exp.Expr | None:
    """SQLite's LIKE is case-insensitive for ASCII and has no escape character by default."""
    pattern = node.expression
    new = exp.ILike(this=to_text(node.this), expression=pattern)
    if isinstance(pattern, exp.Literal) and "\\" in pattern.this:
        return _typed(exp.Escape(this=new, expression=exp.Literal.string("")), "boolean")
    return _typed(new, "boolean")


def glob(node: exp.Glob) -> exp.Expr | None:
    """GLOB is case-sensitive with * ? and [...] classes: a POSIX regex match."""
    pattern = node.expression
    if isinstance(pattern, exp.Literal):
        return _typed(
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


def aggregate_numeric(node: exp.Expr) -> exp.Expr | None:
    """sum/avg over text (SQLite coerces each value) or booleans (0/1)."""
    arg = node.this
    if arg is not None and not is_number(arg) and not isinstance(arg, exp.Star):
        node.set("this", to_number(arg))
    return None


def group_concat(node: exp.GroupConcat) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    if node.args.get("separator") is None:
        node.set("separator", exp.Literal.string(","))
    return _typed(node, "text")


def json_extract(node: exp.Expr) -> exp.Expr | None:
    """The path functions sqlglot writes take json: text and jsonb columns are cast. The
    result is text (SQLite returns the JSON value's own SQL type)."""
    node.set("this", exp.cast(node.this, "json"))
    return None


def _total(node: exp.Anonymous) -> exp.Expr:
    arg = to_number(node.expressions[0])
    return _typed(
        fill("CAST(COALESCE(SUM(__x), 0) AS DOUBLE PRECISION)", x=arg), "double precision"
    )


def _typeof(node: exp.Expr) -> exp.Expr | None:
    arg = node.this if not isinstance(node, exp.Anonymous) else node.expressions[0]
    name = {
        "integer": "integer",
        "boolean": "integer",
        "real": "real",
        "text": "text",
        "literal_text": "text",
        "uuid": "text",
        "json": "text",
        "timestamp": "text",
        "date": "text",
        "bytea": "blob",
    }.get(kind(arg))
    if name is None:
        return None  # numeric columns hold integers or reals per value: not decidable
    return _typed(fill(f"CASE WHEN __x IS NULL THEN 'null' ELSE '{name}' END", x=arg), "text")


def _printf(node: exp.Anonymous) -> exp.Expr | None:
    """printf/format with %s, %d, %i, %f, %.Nf, %%, and widths on %d (zero or space padded)."""
    args = node.expressions
    if not args or not isinstance(args[0], exp.Literal):
        return None
    fmt = args[0].this
    values = list(args[1:])
    pieces: list[exp.Expr] = []
    pos = 0
    for m in re.finditer(r"%(0?)(\d*)(?:\.(\d+))?([sdifq%])", fmt):
        if m.start() > pos:
            pieces.append(exp.Literal.string(fmt[pos : m.start()]))
        pos = m.end()
        zero, width, prec, conv = m.groups()
        if conv == "%":
            pieces.append(exp.Literal.string("%"))
            continue
        if not values:
            return None
        v = values.pop(0)
        w = int(width or 0)
        if conv == "s":  # NULL prints as nothing
            piece = fill("COALESCE(__x, '')", x=to_text(v))
        elif conv in ("d", "i"):  # NULL prints as 0; zero padding goes after the sign
            n = fill("COALESCE(CAST(TRUNC(__x) AS BIGINT), 0)", x=to_number(v))
            if zero and w:
                piece = fill(
                    f"CASE WHEN __n < 0 THEN '-' || {_pad('CAST(-__n AS TEXT)', w - 1, '0')} "
                    f"ELSE {_pad('CAST(__n AS TEXT)', w, '0')} END",
                    n=n,
                )
                w = 0
            else:
                piece = fill("CAST(__n AS TEXT)", n=n)
        elif conv == "f":
            piece = fill(
                f"CAST(ROUND(CAST(COALESCE(__x, 0) AS NUMERIC), {int(prec or 6)}) AS TEXT)",
                x=to_number(v),
            )
        else:
            return None
        if w:
            piece = fill(_pad("__x", w, "0" if zero else " "), x=piece)
        pieces.append(piece)
    if pos < len(fmt):
        pieces.append(exp.Literal.string(fmt[pos:]))
    if "%" in re.sub(r"%(0?)(\d*)(?:\.(\d+))?([sdifq%])", "", fmt):
        return None  # a conversion not handled here
    if not pieces:
        return exp.Literal.string("")
    out = pieces[0]
    for p in pieces[1:]:
        out = exp.DPipe(this=out, expression=p)
    return _typed(out, "text")


def _pad(sql: str, width: int, pad: str) -> str:
    """printf's minimum width: pad on the left, never cut (LPAD alone would cut)."""
    return f"CASE WHEN LENGTH({sql}) >= {width} THEN {sql} ELSE LPAD({sql}, {width}, '{pad}') END"


def _instr(node: exp.StrPosition) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    return None


def _substr(node: exp.Substring) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    return _typed(node, "text")


def _length(node: exp.Length) -> exp.Expr | None:
    if kind(node.this) != "bytea":
        node.set("this", to_text(node.this))
    return None


def _if(node: exp.If) -> exp.Expr | None:
    return None  # sqlglot writes iif as CASE


def _json_valid(node: exp.Anonymous) -> exp.Expr | None:
    """json_valid(x): NULL for NULL; a jsonb column is valid by construction. On text,
    PostgreSQL 15 has no test that returns false, so a cast that raises stands in for it:
    right for CHECK constraints (what the function is used for), an error elsewhere."""
    if len(node.expressions) != 1:
        return None
    arg = node.expressions[0]
    if kind(arg) == "json":
        return _typed(fill("CASE WHEN __x IS NULL THEN NULL ELSE TRUE END", x=arg), "boolean")
    return _typed(
        fill("CASE WHEN __x IS NULL THEN NULL ELSE CAST(__x AS JSONB) IS NOT NULL END", x=arg),
        "boolean",
    )


ANONYMOUS: dict[str, Callable[[exp.Anonymous], exp.Expr | None]] = {
    "total": _total,
    "json_valid": _json_valid,
    "typeof": _typeof,
    "printf": _printf,
    "format": _printf,
    "date": dates.date_function,
    "datetime": dates.date_function,
    "time": dates.date_function,
    "julianday": dates.date_function,
    "unixepoch": dates.date_function,
    "strftime": dates.date_function,
}


def anonymous(node: exp.Anonymous) -> exp.Expr | None:
    rule = ANONYMOUS.get(node.name.lower())
    return rule(node) if rule else None


# (node class, rule): the first matching row applies
RULES: list[tuple[type[exp.Expr], Callable[..., exp.Expr | None]]] = [
    (exp.EQ, compare),
    (exp.NEQ, compare),
    (exp.GT, compare),
    (exp.GTE, compare),
    (exp.LT, compare),
    (exp.LTE, compare),
    (exp.Collate, collate),
    (exp.Between, between),
    (exp.Paren, paren),
    (exp.Add, arithmetic),
    (exp.Sub, arithmetic),
    (exp.Mul, arithmetic),
    (exp.Div, arithmetic),
    (exp.Mod, arithmetic),
    (exp.DPipe, concat),
    (exp.Cast, cast),
    (exp.Like, like),
    (exp.Glob, glob),
    (exp.Sum, aggregate_numeric),
    (exp.Avg, aggregate_numeric),
    (exp.GroupConcat, group_concat),
    (exp.JSONExtract, json_extract),
    (exp.JSONExtractScalar, json_extract),
    (exp.StrPosition, _instr),
    (exp.Substring, _substr),
    (exp.Length, _length),
    (exp.Typeof, _typeof),
    (exp.TimeToStr, dates.time_to_str),
    (exp.Date, dates.date_function),
    (exp.Anonymous, anonymous),
]


def prepare(tree: exp.Expr) -> exp.Expr:
    """Rewrites needed before sqlglot can qualify the tree (``x IN tablename``)."""
    for node in list(tree.find_all(exp.In)):
        new = in_list(node)
        if new is not None:
            if node is tree:
                return new
            node.replace(new)
    return tree


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
