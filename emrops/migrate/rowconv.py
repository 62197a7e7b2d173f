"""Per-row conversion of source rows for the copy (the values the plan says need it), and how
a row is named in messages and the reject file."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

from emrops.errors import CheckFailed
from emrops.migrate.convert import CONVERT, ConversionError
from emrops.migrate.plan import ColumnPlan, TablePlan


class ValueRejected(CheckFailed):
    """A value could not be converted and ``--on-error abort`` is in force (exit 3)."""


def row_converter(
    tp: TablePlan,
    on_reject: Callable[[Any, str, Any, str], None] | None,
    *,
    strict: bool = False,
):
    """A function source-row -> converted tuple (or None when rejected), raising CopyFailed on
    abort. Source rows carry the rowid first for rowid tables. ``strict`` converts every
    column, the fast ones too (for rows the SQL path found something unexpected in)."""
    offset = 0 if tp.without_rowid else 1
    slow = [
        (i, c.source, CONVERT[c.converter], c.notnull, null_keys(c))
        for i, c in enumerate(tp.columns)
        if strict or not c.fast
    ]
    pk_pos = [i for i, c in enumerate(tp.columns) if c.source in tp.key]

    def key_of(row: tuple) -> Any:
        if offset:
            return row[0]
        return {tp.columns[i].source: row[i] for i in pk_pos}

    if not slow:
        if offset:
            return lambda row: row[1:]
        return lambda row: row

    def convert(row: tuple) -> tuple | None:
        out = list(row[offset:])
        for i, name, fn, notnull, fill in slow:
            v = out[i]
            if v is None:
                if fill is not None:
                    out[i] = next(fill)
                    continue
                if notnull:
                    err = "NULL in a NOT NULL column"
                else:
                    continue
            else:
                try:
                    out[i] = fn(v)
                    continue
                except ConversionError as exc:
                    err = str(exc)
            if on_reject is None:
                raise ValueRejected(
                    f"table {tp.source}, row {key_text(tp, key_of(row))}, column {name}: "
                    f"cannot convert {show(v)} to {tp.columns[i].pg_type}: {err}",
                    hint="add a cast rule for the column (--cast), or rerun with --on-error reject "
                    "to write such rows to a reject file",
                )
            on_reject(key_of(row), name, v, err)
            return None
        return tuple(out)

    return convert


def null_keys(col: ColumnPlan) -> Iterator[int] | None:
    """The keys given to NULL keys of ``col`` in source order (cast rule null_key =
    "generate"), or None. The same sequence in the copy and in verification."""
    return itertools.count(col.null_fill) if col.null_fill is not None else None


def key_text(tp: TablePlan, key: Any) -> str:
    if isinstance(key, dict):
        return ", ".join(f"{k}={v!r}" for k, v in key.items())
    return f"{tp.key[0]}={key}"


def show(v: Any) -> str:
    if isinstance(v, bytes):
        text = v.decode("utf-8", errors="backslashreplace")
        return repr(text[:80])
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def key_id(key: Any) -> str:
    """A row key as ASCII JSON text, so a source key and a journaled one compare. ASCII: a text
    key holding NUL (or bytes that are not UTF-8) cannot go into jsonb as a value, but its
    key_id can (journaled as "rejected_key_ids")."""
    return json.dumps(json.loads(json.dumps(key, default=str)), sort_keys=True)


def rejected_ids(detail: dict[str, Any]) -> list[str]:
    """The key_ids of the rows a table's copy rejected, from its journal entry (a journal
    written before "rejected_key_ids" holds the keys themselves)."""
    if "rejected_key_ids" in detail:
        return [str(k) for k in detail["rejected_key_ids"] or []]
    return [key_id(k) for k in detail.get("rejected_keys") or []]
