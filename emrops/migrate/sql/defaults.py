"""Column defaults: a SQLite default expression as a PostgreSQL default for the chosen type.

A default that has no equivalent is reported (the plan asks for a cast rule), never guessed.
"""

from __future__ import annotations

import re


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
