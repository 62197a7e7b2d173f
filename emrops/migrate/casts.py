"""The cast file (``--cast``, TOML): per-column rules (type, epoch, default, null_key),
replacement SQL per view and per trigger; loaded, then checked against the reflected schema."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from emrops.errors import UsageError
from emrops.migrate.reflect import Schema


def load_casts(path: Path | None) -> dict[str, dict[str, dict[str, Any]]]:
    """Cast file (TOML): ``[table.column]`` or ``[table] column = {type = ..., epoch = ...}``."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"cast file not found: {path}", hint="check the --cast path") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cast file {path} is not valid TOML: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"cast file {path} is nested too deeply to read") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, unreadable, not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read cast file {path}: {reason}") from None
    for table, cols in data.items():
        if not isinstance(cols, dict) or not all(isinstance(r, dict) for r in cols.values()):
            raise UsageError(
                f"cast file {path}: [{table}] must hold one table per column",
                hint='write [mytable.mycolumn] then type = "text"',
            )
    return data


def check_casts(schema: Schema, casts: dict[str, Any]) -> None:
    """Every table, column, view and trigger the cast file names exists, and each view or
    trigger rule is one ``sql`` string; else a UsageError naming it."""
    tables = {t.name: t for t in schema.tables}
    named = {
        "view": ({v.name for v in schema.views}, "the view's SELECT as PostgreSQL SQL"),
        "trigger": (
            {t.name for t in schema.triggers},
            'CREATE FUNCTION ... ; CREATE TRIGGER ... as PostgreSQL SQL, or "" to leave it out',
        ),
    }
    for kind, (names, what) in named.items():
        _check_named(casts, tables, kind, names, what)
    for tname, cols in casts.items():
        if tname in named and tname not in tables:
            continue
        if tname not in tables:
            raise UsageError(
                f"cast file names unknown table {tname!r}",
                hint=f"tables: {', '.join(sorted(tables)) or '(none)'}",
            )
        known = {c.name for c in tables[tname].columns}
        for cname in cols:
            if cname not in known:
                raise UsageError(
                    f"cast file names unknown column {tname}.{cname}",
                    hint=f"columns of {tname}: {', '.join(sorted(known))}",
                )


def named_rules(casts: dict[str, Any], tables: dict[str, Any], kind: str) -> dict[str, Any]:
    """``[view.<name>] sql = "..."`` (a replacement SELECT) and ``[trigger.<name>] sql =
    "..."`` (replacement DDL, or "" to leave the trigger out). A table named ``view`` or
    ``trigger`` keeps its column rules there instead."""
    if kind in tables:
        return {}
    rules = casts.get(kind, {})
    return rules if isinstance(rules, dict) else {}


def _check_named(
    casts: dict[str, Any], tables: dict[str, Any], kind: str, names: set[str], what: str
) -> None:
    """``[view.<name>]`` or ``[trigger.<name>]``: an existing object, one ``sql`` string."""
    for name, rule in named_rules(casts, tables, kind).items():
        if name not in names:
            raise UsageError(
                f"cast file names unknown {kind} {name!r}",
                hint=f"{kind}s: {', '.join(sorted(names)) or '(none)'}",
            )
        if (
            not isinstance(rule, dict)
            or not isinstance(rule.get("sql"), str)
            or set(rule) != {"sql"}
        ):
            raise UsageError(
                f'cast file: [{kind}.{name}] takes one key, sql = "..."',
                hint=f"write {what}",
            )
