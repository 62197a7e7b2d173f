"""Plan one table: each column's PostgreSQL type (typemap.py, from its declared type and the
profile of its values), default, collation, notes and anomalies (with an example row), and the
table's CREATE TABLE."""

from __future__ import annotations

import math
import re
import sqlite3
from typing import Any

from emrops.errors import UsageError
from emrops.migrate import profile as prof
from emrops.migrate.batching import fetch_batches
from emrops.migrate.convert import CONVERT, ConversionError
from emrops.migrate.plan import ColumnPlan, PlanAnomaly, TablePlan, is_text
from emrops.migrate.reflect import Column, Table, affinity, fold, quote, unquote
from emrops.migrate.sql import defaults
from emrops.migrate.typemap import Anomaly, Mapping, is_fast, map_column, shorten, text_mapping

# PostgreSQL's system columns: a table column of one of these names is refused ("conflicts with
# a system column name"), quoted or not (oid stopped being one in PostgreSQL 12)
SYSTEM_COLUMNS = {"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"}


def plan_table(
    conn: sqlite3.Connection,
    table: Table,
    target: str,
    rules: dict[str, Any],
    name_for: Any,
    anomalies: list[PlanAnomaly],
    notes: list[str],
    check_text: bool = True,
) -> tuple[TablePlan, dict[str, str], prof.TableProfile]:
    """The plan of one table, its column names (lower-case source -> PostgreSQL) and the
    profile of its values. Adds
    the table's anomalies (with an example row each) and notes to ``anomalies`` and
    ``notes``; a bad cast rule is a UsageError naming the column."""
    json_checks = _json_checks(table)
    tprof = prof.profile_table(conn, table, json_columns(table), check_text)
    col_scope: set[str] = set()
    # system-column names (and "") last, so their new names step around the table's own
    names = {
        c.name: name_for("column", c.name, col_scope)
        for c in sorted(table.columns, key=lambda c: c.name in SYSTEM_COLUMNS or not c.name)
    }
    columns: list[ColumnPlan] = []
    cmap: dict[str, str] = {}
    mapped: list[tuple[Column, Mapping, int]] = []  # (column, mapping, numeric check's place)
    for col in table.columns:
        p = tprof.columns[col.name]
        rule = rules.get(col.name)
        m, null_fill = _mapping(
            conn, table, col, p, rule, json_checks.get(col.name), notes, check_text
        )
        if rule and (rule.get("type") or rule.get("epoch")) and m.converter not in TEXTUAL:
            m.anomalies += _rule_failures(conn, table, col, m)
        mapped.append((col, m, len(m.anomalies)))  # the default's anomaly comes after it
        cname = names[col.name]
        cmap[fold(col.name)] = cname
        cp = ColumnPlan(
            col.name,
            cname,
            col.declared,
            m.pg_type,
            m.converter,
            m.reason,
            # a primary key is NOT NULL in PostgreSQL: a NULL key is rejected by the copy
            # (--on-error reject) or given a generated key (null_key rule), never loaded
            notnull=col.notnull or bool(col.pk_pos),
            identity=m.identity or null_fill is not None,
            default=_column_default(col, rule, m),
            select_blob=m.converter == "bytea" or bool(p.n_bad_utf8),
            notes=list(m.notes),
        )
        cp.null_fill = null_fill
        cp.fast = is_fast(m, p, cp.select_blob) and null_fill is None
        if col.generated:
            cp.notes.append("generated column: copied as stored values")
        columns.append(cp)
    _numeric_fit(conn, table, mapped, tprof.columns)
    for (col, m, _at), cp in zip(mapped, columns, strict=True):
        anomalies += [_with_example(conn, table, col.name, m.pg_type, a) for a in m.anomalies]
        notes += [f"{table.name}.{col.name}: {n}" for n in cp.notes]
    key = prof.key_names(table)  # the row id's free name for rowid tables
    tp = TablePlan(
        table.name,
        target,
        tprof.rows,
        table.without_rowid,
        key,
        columns,
        create_sql(target, columns),
        pk=list(table.pk),
    )
    return tp, cmap, tprof


# converters that take any value
TEXTUAL = ("bytea",)


def _sql_literal(value: Any) -> str:
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float) and not math.isfinite(value):
        return "9e999" if value > 0 else "-9e999"  # SQLite's infinities
    return repr(value)


def _rule_failures(
    conn: sqlite3.Connection, table: Table, col: Column, m: Mapping
) -> list[Anomaly]:
    """Values a cast rule's conversion refuses (text in an epoch column, 'abc' cast to
    bigint): an anomaly counting their rows, so that plan says what run would stop on."""
    convert = CONVERT[m.converter]
    c = quote(col.name)
    # text: only blobs can fail (decoded as UTF-8, without NUL); text values with NUL bytes
    # or invalid UTF-8 have anomalies of their own
    only = f" AND typeof({c}) = 'blob'" if m.converter == "text" else ""
    cur = conn.execute(
        f"SELECT {c}, count(*) FROM {quote(table.name)} WHERE {c} IS NOT NULL{only} GROUP BY {c}"
    )
    rows, first, why = 0, None, ""
    try:
        for batch in fetch_batches(cur, 10_000):
            for value, n in batch:
                try:
                    convert(value)
                except (ConversionError, ValueError, OverflowError, TypeError) as exc:
                    rows += n
                    if first is None:
                        first, why = value, str(exc)
    except sqlite3.OperationalError:
        return []  # undecodable text: its own anomaly says so
    if not rows:
        return []
    literal = _sql_literal(first)
    return [
        Anomaly(
            "rule",
            rows,
            f"the cast rule's conversion to {m.pg_type} refuses these values ({why}): change "
            "the rule, or run with --on-error reject",
            value=first,
            # (a predicate formatted with {c} later: the literal's own braces doubled)
            where=(
                "{c} = " + literal.replace("{", "{{").replace("}", "}}")
                if len(literal) <= 10_000
                else None
            ),
        )
    ]


def _converts(conn: sqlite3.Connection, table: Table, col: Column, m: Mapping) -> bool:
    """Every distinct value of the column converts to ``m``'s type."""
    convert = CONVERT[m.converter]
    c = quote(col.name)
    cur = conn.execute(f"SELECT DISTINCT {c} FROM {quote(table.name)} WHERE {c} IS NOT NULL")
    try:
        for batch in fetch_batches(cur, 10_000):
            for (value,) in batch:
                convert(value)
    except (ConversionError, ValueError, sqlite3.OperationalError):
        return False  # (an undecodable text value fails the fetch)
    return True


def name_sequences(tp: TablePlan, scope: set[str]) -> None:
    """Name each identity's sequence clear of every relation the plan creates (``scope``).
    PostgreSQL picks ``table_column_seq`` when it creates the table, and a source table of
    that name created after it would then fail (\"relation already exists\"); so where that
    name is taken (or too long) the plan names the sequence itself."""
    named = False
    for c in tp.columns:
        if c.identity:
            natural = f"{tp.target}_{c.target}_seq"
            name = shorten(natural, scope)
            scope.add(name)
            if name != natural:
                c.sequence, named = name, True
    if named:
        tp.create_sql = create_sql(tp.target, tp.columns)


def create_sql(target: str, columns: list[ColumnPlan]) -> str:
    return f"CREATE TABLE {quote(target)} (" + ", ".join(map(_column_sql, columns)) + ")"


def follow_key(
    conn: sqlite3.Connection,
    table: Table,
    tp: TablePlan,
    column: str,
    p: prof.ColumnProfile,
    want: str,
    parent: str,
) -> bool:
    """Give a foreign key's column the type of the key it references (SQLite compares them
    with the parent's affinity and collation, PostgreSQL refuses a key between two types):
    citext for text under a NOCASE parent, else the parent's type when every distinct value
    converts to it and the default still translates. False: left as it was."""
    cp = next(c for c in tp.columns if c.source == column)
    col = next(c for c in table.columns if c.name == column)
    if want == "citext":
        if not is_text(cp.pg_type):
            return False
        cp.pg_type = "citext"
    else:
        try:
            m = map_column(col.declared, p, rule={"type": want})
        except ValueError:
            return False  # not a type a cast rule can name
        default, ok, _why = _default(col.default, m)
        if m.anomalies or not ok or m.pg_type != want or not _converts(conn, table, col, m):
            return False
        cp.pg_type, cp.converter, cp.default = m.pg_type, m.converter, default
        cp.fast = is_fast(m, p, cp.select_blob) and cp.null_fill is None
    cp.reason = f"{col.declared or 'untyped'}: the type of the key it references ({parent})"
    cp.notes.append(f"foreign key to {parent}: takes its type, {cp.pg_type}")
    tp.create_sql = create_sql(tp.target, tp.columns)
    return True


def _mapping(
    conn: sqlite3.Connection,
    table: Table,
    col: Column,
    p: prof.ColumnProfile,
    rule: dict[str, Any] | None,
    implied: Any,
    notes: list[str],
    check_text: bool,
) -> tuple[Mapping, int | None]:
    """The column's type (typemap.map_column), collation, NULL keys (and the first key
    generated for them, if a rule says so), and the value checks its type needs (numeric
    precision, timestamp fractions)."""
    declared = col.declared
    if implied is not None and not (rule or {}).get("type") and p.n_text and p.n_json == p.n_values:
        # Django's JSONField on SQLite: text with CHECK (JSON_VALID(col) OR col IS
        # NULL); jsonb implies the check, which is dropped
        declared = "JSON"
        table.checks = [c for c in table.checks if c is not implied]
        notes.append(
            f"{table.name}.{col.name}: CHECK ({implied.expr}) is implied by jsonb "
            "(dropped); the column becomes jsonb"
        )
    try:
        m = map_column(declared, p, rowid_alias=col.name == table.rowid_alias, rule=rule)
    except ValueError as exc:
        raise UsageError(f"cast rule for {table.name}.{col.name}: {exc}") from None
    if declared != col.declared:
        m.reason = f"{col.declared or 'untyped'} with CHECK json_valid: every value is JSON"
    if (
        m.pg_type in ("timestamptz", "uuid")
        and affinity(declared) == "TEXT"
        and col.default is not None
        and not rule
        and not _default(col.default, m)[1]
    ):
        # a text column taken for timestamps (or UUIDs) by its values whose default is not one
        # (WordPress: post_date_gmt text DEFAULT '0000-00-00 00:00:00'): the app writes that
        # text, so the column stays text
        kind = "timestamps" if m.pg_type == "timestamptz" else "UUIDs"
        m = text_mapping(declared, p)
        m.notes.append(f"values are all {kind} but the default {col.default} is not: kept as text")
    if "CHAR(32)" in declared.upper().replace(" ", "") and 0 < p.n_uuid < p.n_values:
        # some values are UUIDs, others 32 hex digits without a UUID's version and variant
        # bits (MD5 digests): a uuid column would give those back with dashes
        m.notes.append(
            f"{p.n_values - p.n_uuid} value(s) are not UUIDs (32 hex digits without a UUID's "
            "version and variant bits, e.g. MD5 digests): kept as text, as written"
        )
    _collation(col, m, rule)
    null_fill = _null_keys(conn, table, col, p, m, rule)
    if m.converter == "ts" and check_text and p.n_text:
        _precision_note(conn, table, col.name, m)
    return m, null_fill


def _column_default(col: Column, rule: dict[str, Any] | None, m: Mapping) -> str | None:
    """The cast rule's default ("" for none), else the translated SQLite default; one that
    does not translate is an anomaly."""
    if rule and "default" in rule:
        return str(rule["default"]) if rule["default"] != "" else None
    default, ok, why = _default(col.default, m)
    if not ok:
        m.anomalies.append(Anomaly("default", 1, why, value=col.default))
    return default


def _with_example(
    conn: sqlite3.Connection, table: Table, column: str, pg_type: str, a: Anomaly
) -> PlanAnomaly:
    """An anomaly of the plan, with the key and value of one offending row (for a default,
    which no row holds: the default itself)."""
    if a.condition == "default":
        return PlanAnomaly(table.name, column, a.condition, a.count, a.message, None, a.value)
    where = a.where or _anomaly_where(a.condition, pg_type) or prof.CONDITIONS.get(a.condition, "1")
    ex = prof.example(conn, table, column, where)
    ex_key, value = ex if ex else (None, None)
    return PlanAnomaly(table.name, column, a.condition, a.count, a.message, ex_key, value)


def _column_sql(c: ColumnPlan) -> str:
    d = f"{quote(c.target)} {c.pg_type}"
    if c.identity:
        d += " GENERATED BY DEFAULT AS IDENTITY"
        if c.sequence:
            d += f" (SEQUENCE NAME {quote(c.sequence)})"
    if c.notnull or c.identity:
        d += " NOT NULL"
    if c.default is not None:
        d += f" DEFAULT {c.default}"
    return d


def _collation(col: Any, m: Any, rule: dict[str, Any] | None) -> None:
    """``COLLATE NOCASE`` text becomes citext (case-insensitive comparisons, and unique
    indexes, as in SQLite); other collations are dropped with a note."""
    if not col.collation or col.collation == "BINARY":
        return
    texty = is_text(m.pg_type)
    if col.collation == "NOCASE" and texty and not (rule or {}).get("type"):
        was = m.pg_type
        m.pg_type = "citext"
        m.notes.append(
            f"COLLATE NOCASE: citext instead of {was} (extension citext), so comparisons and "
            "unique indexes stay case-insensitive (citext folds all letters, SQLite only ASCII)"
            + (f"; the {was} length limit is not kept" if was != "text" else "")
        )
    else:
        m.notes.append(f"COLLATE {col.collation} dropped: PostgreSQL compares as binary")


_JSON_CHECK = re.compile(
    r"""\(*\s*json_valid\s*\(\s*(?P<c>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|\w+)\s*\)
        (?:\s+OR\s+(?P<n>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|\w+)\s+IS\s+NULL)?\s*\)*""",
    re.I | re.X,
)


def json_columns(table: Table) -> set[str]:
    """Columns declared JSON or checked with json_valid (the profile counts their JSON)."""
    declared = {c.name for c in table.columns if "JSON" in c.declared.upper()}
    return declared | set(_json_checks(table))


def _json_checks(table: Table) -> dict[str, Any]:
    """CHECKs that only say a column holds JSON (``json_valid(c)``, optionally ``OR c IS
    NULL``), by column name."""
    names = {c.name.lower(): c.name for c in table.columns}
    found: dict[str, Any] = {}
    for chk in table.checks:
        m = _JSON_CHECK.fullmatch(chk.expr.strip())
        if m is None:
            continue
        col = unquote(m.group("c")).lower()
        if m.group("n") is not None and unquote(m.group("n")).lower() != col:
            continue
        if col in names:
            found[names[col]] = chk
    return found


def _default(expr: str | None, m: Any) -> tuple[str | None, bool, str]:
    """(PostgreSQL default, translated?, why not) for a column mapped to ``m``, by
    :mod:`emrops.migrate.sql.defaults`."""
    rule = defaults.translate(expr, m.pg_type)
    if rule.note:
        m.notes.append(rule.note)
    return rule.sql, rule.ok, rule.message


def _null_keys(conn, table: Table, col, p, m, rule: dict[str, Any] | None) -> int | None:
    """NULLs in a primary key that is not a rowid alias (``id INTEGER PRIMARY KEY DESC``,
    ``INT PRIMARY KEY``, a composite key: SQLite lets them hold NULLs, PostgreSQL does not).
    Without a rule they are an anomaly; the rule ``null_key = "generate"`` on a single
    integer key gives them new keys above the largest one (returned: the first such key)."""
    choice = (rule or {}).get("null_key")
    if choice not in (None, "generate"):
        raise UsageError(
            f'cast rule for {table.name}.{col.name}: null_key must be "generate", not {choice!r}',
            hint="rows with NULL keys are rejected with --on-error reject instead",
        )
    if col.notnull and not col.pk_pos and p.n_null:
        # SQLite checks NOT NULL on writes only: rows written before the constraint was
        # (by an older schema, or writable_schema) keep their NULLs, which the copy refuses
        m.anomalies.append(
            Anomaly(
                "null",
                p.n_null,
                "NULL in a NOT NULL column (written before SQLite had the constraint): set "
                "those rows in the source, or run with --on-error reject to write them to the "
                "reject file",
            )
        )
    if not col.pk_pos or table.rowid_alias or table.without_rowid or not p.n_null:
        return None
    if choice == "generate":
        if len(table.pk) != 1 or m.pg_type != "bigint":
            raise UsageError(
                f'cast rule for {table.name}.{col.name}: null_key = "generate" needs a '
                f"single-column integer primary key (this one is {m.pg_type}, "
                f"{len(table.pk)} column(s))",
                hint="reject those rows instead: run with --on-error reject",
            )
        c, t = quote(col.name), quote(table.name)
        top = conn.execute(f"SELECT max({c}) FROM {t} WHERE typeof({c}) = 'integer'").fetchone()
        start = int(top[0] or 0) + 1
        m.notes.append(
            f"{p.n_null} NULL key(s) get generated keys from {start} on (cast rule null_key)"
        )
        return start
    m.anomalies.append(
        Anomaly(
            "null",
            p.n_null,
            "NULL in a primary key that is not a rowid alias (SQLite allows it, PostgreSQL "
            'does not): add a cast rule null_key = "generate" to give those rows new keys, '
            "or run with --on-error reject to write them to the reject file",
        )
    )
    return None


_LONG_FRACTION_GLOB = "*:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*"


def _precision_note(conn: sqlite3.Connection, table: Table, column: str, m: Any) -> None:
    """Timestamps with more than 6 fractional digits: PostgreSQL keeps microseconds."""
    c = quote(column)
    n = conn.execute(
        f"SELECT count(*) FROM {quote(table.name)} WHERE typeof({c}) = 'text' AND {c} GLOB ?",
        (_LONG_FRACTION_GLOB,),
    ).fetchone()[0]
    if n:
        m.notes.append(
            f"{n} timestamp(s) with more than 6 fractional digits are rounded to microseconds"
        )


def _numeric_fit(
    conn: sqlite3.Connection, table: Table, mapped: list[Any], profiles: dict[str, Any]
) -> None:
    """numeric(p,s) rounds extra decimals and rejects too many digits: count such values of
    every numeric(p,s) column of the table (``mapped``: (column, mapping, the place of the
    anomaly among the mapping's)). The profile's scan counted them for a declared
    NUMERIC(p,s) mapped to that type; the others (a cast rule's type) get one scan."""
    checks = []
    for col, m, at in mapped:
        if m.pg_type.startswith("numeric("):
            p, s = (int(x) for x in m.pg_type[len("numeric(") : -1].split(","))
            counted = profiles[col.name].unfit
            n = counted[1] if counted is not None and counted[0] == m.pg_type else None
            checks.append((col, m, at, p, s, prof.unfit_sql(p, s), n))
    scan = [c for c in checks if c[-1] is None]
    if scan:
        sums = ", ".join(f"sum({w.format(c=quote(col.name))})" for col, *_r, w, _n in scan)
        row = conn.execute(f"SELECT {sums} FROM {quote(table.name)}").fetchone()
        counts = {id(c): n for c, n in zip(scan, row, strict=True)}
        checks = [(*c[:-1], counts.get(id(c), c[-1])) for c in checks]
    for _col, m, at, p, s, where, n in checks:
        if n:
            anomaly = Anomaly(
                "numeric_fit",
                n,
                f"values with more than {s} decimals or "
                f"{p - s} integer digits would be rounded or rejected by "
                f'{m.pg_type}; add a cast rule type = "numeric"',
            )
            anomaly.where = where
            m.anomalies.insert(at, anomaly)


def _anomaly_where(condition: str, pg_type: str) -> str | None:
    """Predicate selecting the offending values of an anomaly, for its example row."""
    return {
        "bool_bad": "{c} IS NOT NULL AND NOT (typeof({c}) = 'integer' AND {c} IN (0, 1)) "
        f"AND NOT ({prof.CONDITIONS['bool_text']})",
        "json_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['json']})",
        "date_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['date']})",
        "time_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['time']})",
        "iso_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['iso']}) "
        f"AND NOT ({prof.CONDITIONS['date']})",
        "mixed": "typeof({c}) NOT IN ('null', 'text')",
        "default": "1",
    }.get(condition)
