"""Rewrite SQLite SQL fragments (defaults, CHECK, index and view SQL) for PostgreSQL.

Token based, never regex over raw SQL, so string literals are left alone. What cannot be
translated is left as is: the run tries it and reports PostgreSQL's error for that object.
"""

from __future__ import annotations

import re

from emrops.migrate.reflect import quote, tokens, unquote

KEYWORDS = set(
    [
        "abort",
        "action",
        "add",
        "after",
        "all",
        "alter",
        "and",
        "as",
        "asc",
        "attach",
        "autoincrement",
        "before",
        "begin",
        "between",
        "by",
        "cascade",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "commit",
        "conflict",
        "constraint",
        "create",
        "cross",
        "current",
        "current_date",
        "current_time",
        "current_timestamp",
        "database",
        "default",
        "deferrable",
        "deferred",
        "delete",
        "desc",
        "detach",
        "distinct",
        "drop",
        "each",
        "else",
        "end",
        "escape",
        "except",
        "exclusive",
        "exists",
        "explain",
        "fail",
        "filter",
        "for",
        "foreign",
        "from",
        "full",
        "glob",
        "group",
        "having",
        "if",
        "ignore",
        "immediate",
        "in",
        "index",
        "indexed",
        "initially",
        "inner",
        "insert",
        "instead",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "key",
        "left",
        "like",
        "limit",
        "match",
        "natural",
        "no",
        "not",
        "notnull",
        "null",
        "of",
        "offset",
        "on",
        "or",
        "order",
        "outer",
        "over",
        "partition",
        "plan",
        "pragma",
        "primary",
        "query",
        "raise",
        "recursive",
        "references",
        "regexp",
        "reindex",
        "release",
        "rename",
        "replace",
        "restrict",
        "right",
        "rollback",
        "row",
        "rows",
        "savepoint",
        "select",
        "set",
        "table",
        "temp",
        "temporary",
        "then",
        "to",
        "transaction",
        "trigger",
        "true",
        "false",
        "union",
        "unique",
        "update",
        "using",
        "vacuum",
        "values",
        "view",
        "virtual",
        "when",
        "where",
        "window",
        "with",
        "without",
        "nulls",
        "first",
        "last",
    ]
)

FUNCTIONS = {"ifnull": "coalesce", "substr": "substr", "instr": "strpos"}


def _strftime_format(fmt: str) -> str | None:
    """A SQLite strftime format as a PostgreSQL to_char format."""
    out = []
    i = 0
    parts = {
        "%Y": "YYYY",
        "%m": "MM",
        "%d": "DD",
        "%H": "HH24",
        "%M": "MI",
        "%S": "SS",
        "%f": "SS.MS",
        "%j": "DDD",
    }
    literal = ""
    while i < len(fmt):
        two = fmt[i : i + 2]
        if two in parts:
            if literal:
                out.append('"' + literal + '"')
                literal = ""
            out.append(parts[two])
            i += 2
        elif fmt[i] == "%":
            return None
        else:
            literal += fmt[i]
            i += 1
    if literal:
        out.append('"' + literal + '"')
    return "".join(out)


_NOW_FUNCS = re.compile(
    r"""^\(*\s*(?:datetime|strftime)\s*\(\s*(?:'(?P<fmt>[^']*)'\s*,\s*)?'now'\s*\)\s*\)*$""", re.I
)


def translate_default(expr: str | None, pg_type: str) -> tuple[str | None, bool]:
    """(PostgreSQL default SQL or None, translated?) for a SQLite column default."""
    if expr is None:
        return None, True
    text = expr.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    up = text.upper()
    base = pg_type.split("(")[0]
    is_ts = base in ("timestamptz", "date")
    if up == "NULL":
        return None, True
    if base == "boolean":
        if text in ("0", "1"):
            return ("true" if text == "1" else "false"), True
        if up in ("TRUE", "FALSE"):
            return up.lower(), True
        return None, False
    if re.fullmatch(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?", text):
        return text, True
    if re.fullmatch(r"'(?:[^']|'')*'", text) or re.fullmatch(r"[xX]'[0-9a-fA-F]*'", text):
        if text[0] in "xX":
            return f"'\\x{text[2:-1]}'::bytea", True
        return text, True
    if up in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME"):
        if is_ts:
            return up, True
        fmt = {
            "CURRENT_TIMESTAMP": "YYYY-MM-DD HH24:MI:SS",
            "CURRENT_DATE": "YYYY-MM-DD",
            "CURRENT_TIME": "HH24:MI:SS",
        }[up]
        return f"to_char(now() AT TIME ZONE 'UTC', '{fmt}')", True
    if re.fullmatch(r"unixepoch\s*\(\s*(?:'now')?\s*\)", text, re.I) or re.fullmatch(
        r"strftime\s*\(\s*'%s'\s*,\s*'now'\s*\)", text, re.I
    ):
        return "extract(epoch from now())::bigint", True
    m = _NOW_FUNCS.fullmatch(text)
    if m:
        if is_ts:
            return "CURRENT_TIMESTAMP", True
        fmt = m.group("fmt")
        pg_fmt = _strftime_format(fmt) if fmt is not None else "YYYY-MM-DD HH24:MI:SS"
        if pg_fmt is None:
            return None, False
        return f"to_char(now() AT TIME ZONE 'UTC', '{pg_fmt}')", True
    return None, False


def translate_expr(
    sql: str,
    columns: dict[str, str] | None = None,
    bool_columns: set[str] | None = None,
) -> str:
    """Rewrite a SQLite expression/SELECT for PostgreSQL.

    ``columns`` maps known identifiers (lower-cased SQLite names) to their PostgreSQL names:
    bare and differently quoted identifiers become double-quoted exact names.
    ``bool_columns`` (PostgreSQL names) turn ``col = 1`` / ``col IN (0, 1)`` into booleans.
    """
    columns = columns or {}
    out: list[str] = []
    toks = tokens(sql)
    pos = 0
    for i, (start, end, text) in enumerate(toks):
        out.append(sql[pos:start])
        pos = end
        low = text.lower()
        nxt = toks[i + 1][2] if i + 1 < len(toks) else ""
        if text[0] in '"`[':
            name = unquote(text)
            out.append(quote(columns.get(name.lower(), name)))
        elif text == "==":
            out.append("=")
        elif low in FUNCTIONS and nxt == "(":
            out.append(FUNCTIONS[low])
        elif re.match(r"[A-Za-z_]", text) and low not in KEYWORDS and low in columns and nxt != "(":
            out.append(quote(columns[low]))
        else:
            out.append(text)
    out.append(sql[pos:])
    result = "".join(out)
    for name in bool_columns or ():
        q = re.escape(quote(name))
        result = re.sub(
            rf"({q})\s*(=|<>|!=)\s*([01])\b",
            lambda m: f"{m.group(1)} {m.group(2)} {'true' if m.group(3) == '1' else 'false'}",
            result,
        )
        result = re.sub(
            rf"({q})\s+IN\s*\(\s*0\s*,\s*1\s*\)", r"\1 IN (false, true)", result, flags=re.I
        )
        result = re.sub(
            rf"({q})\s+IN\s*\(\s*1\s*,\s*0\s*\)", r"\1 IN (true, false)", result, flags=re.I
        )
    return result


def index_element(element: str, columns: dict[str, str], bool_columns: set[str]) -> tuple[str, str]:
    """(PostgreSQL index element, note) for one SQLite index element."""
    note = ""
    text = element.strip()
    m = re.search(r"\s+COLLATE\s+(\w+|\"[^\"]+\")", text, re.I)
    if m:
        note = f"COLLATE {m.group(1)} dropped"
        text = (text[: m.start()] + text[m.end() :]).strip()
    order = ""
    m = re.search(r"\s+(ASC|DESC)$", text, re.I)
    if m:
        order = " " + m.group(1).upper()
        text = text[: m.start()].strip()
    toks = tokens(text)
    translated = translate_expr(text, columns, bool_columns)
    if len(toks) == 1:
        return translated + order, note
    return f"({translated}){order}", note
