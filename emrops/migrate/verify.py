"""Verify a migrated target against the plan and the source.

Per table: row count and an order-independent checksum (sum of 64-bit row hashes over the
canonical form) computed in SQL on PostgreSQL and in Python on SQLite; on a difference, a
keyed diff names missing, extra and changed rows and the differing columns. Then identity
sequences ahead of max(id), and the constraint, index and view inventory equal to the plan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops.db.appdefs import register_stand_ins
from emrops.db.quoting import pg_text
from emrops.db.sqlite_file import open_sqlite
from emrops.migrate import journal, srchash
from emrops.migrate.convert import (
    CONVERT,
    ConversionError,
    canon_function,
    make_row_hasher,
    pg_canon_sql,
    pg_hash_sql,
    pg_row_sql,
)
from emrops.migrate.plan import Plan, TablePlan
from emrops.migrate.reading import read_batches
from emrops.migrate.reflect import quote
from emrops.migrate.rowconv import key_id, null_keys, rejected_ids

SAMPLE = 5


@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    rejected: int
    checksum_ok: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checksum_ok and self.source_rows == self.target_rows


@dataclass
class VerifyResult:
    tables: list[TableCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _pk_columns(tp: TablePlan) -> list[int]:
    """Positions of the columns that key a row in both engines (the primary key, if any)."""
    return [i for i, c in enumerate(tp.columns) if c.source in tp.pk]


def target_checksum(
    conn: psycopg.Connection, tp: TablePlan, where: str = "", params: tuple = ()
) -> tuple[int, int]:
    row_sql = pg_row_sql([(c.target, c.pg_type) for c in tp.columns])
    sql = f"SELECT count(*), coalesce(sum({pg_hash_sql(row_sql)}), 0) FROM {quote(tp.target)}"
    # with parameters psycopg reads % as a placeholder: a name holding one is escaped
    row = (conn.execute(pg_text(sql) + where, params) if params else conn.execute(sql)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


SPLIT_ROWS = 100_000


def target_checksum_split(target_url: str, tp: TablePlan, parts: int) -> tuple[int, int]:
    """The checksum of a big table with an identity key, computed by ``parts`` backends over
    key ranges at once (PostgreSQL does the hashing; this just uses more cores) when the
    server does not run the query in parallel itself (``max_parallel_workers_per_gather`` 0:
    with parallel workers, each range would scan the whole table)."""
    ident = next((c.target for c in tp.columns if c.identity), None)
    with journal.connect(target_url) as conn:
        gather = conn.execute("SELECT current_setting('max_parallel_workers_per_gather')::int")
        parallel = (gather.fetchone() or (0,))[0] > 0
        if ident is None or parts < 2 or tp.rows < SPLIT_ROWS or parallel:
            return target_checksum(conn, tp)
    with journal.connect(target_url) as conn:
        bounds = conn.execute(
            f"SELECT min({quote(ident)}), max({quote(ident)}) FROM {quote(tp.target)}"
        ).fetchone()
    assert bounds is not None
    lo, hi = bounds
    if lo is None:
        return 0, 0
    step = (hi - lo) // parts + 1
    ranges = [(lo + i * step, lo + (i + 1) * step) for i in range(parts)]

    def part(r: tuple[int, int]) -> tuple[int, int]:
        with journal.connect(target_url) as conn:
            where = (
                pg_text(f" WHERE {quote(ident)} >= ")
                + "%s"
                + pg_text(f" AND {quote(ident)} < ")
                + "%s"
            )
            return target_checksum(conn, tp, where, r)

    with ThreadPoolExecutor(max_workers=parts) as pool:
        results = list(pool.map(part, ranges))
    rows = sum(r[0] for r in results)
    with journal.connect(target_url) as conn:  # rows outside the ranges (NULL keys: none)
        counted = conn.execute(f"SELECT count(*) FROM {quote(tp.target)}").fetchone()
    total = counted[0] if counted else -1
    if total != rows:
        with journal.connect(target_url) as conn:
            return target_checksum(conn, tp)
    return rows, sum(r[1] for r in results)


def source_rows(source: Path, tp: TablePlan) -> Any:
    """Converted source rows (rejected ones skipped) with their keys: yields (key, row)."""
    conn = open_sqlite(source, check_same_thread=False)
    register_stand_ins(conn)
    offset = 0 if tp.without_rowid else 1
    convs = [
        (i, CONVERT[c.converter], c.notnull, null_keys(c))
        for i, c in enumerate(tp.columns)
        if not c.fast
    ]
    pk_pos = [i for i, c in enumerate(tp.columns) if c.source in tp.key]

    def key_of(raw: tuple) -> Any:  # as the copy journals a rejected row's key
        if offset:
            return raw[0]
        return {tp.columns[i].source: raw[i] for i in pk_pos}

    bad: list[Any] = []
    try:
        for batch in read_batches(conn, tp, lambda key, _col, _v: bad.append(key)):
            while bad:
                yield bad.pop(), None
            for raw in batch:
                row = list(raw[offset:])
                try:
                    for i, fn, notnull, fill in convs:
                        if row[i] is None:
                            if fill is not None:
                                row[i] = next(fill)
                            elif notnull:
                                raise ConversionError("NULL")
                        else:
                            row[i] = fn(row[i])
                except ConversionError:
                    yield key_of(raw), None
                    continue
                yield key_of(raw), row
    finally:
        conn.close()


def source_checksum(
    source: Path, tp: TablePlan, skip: list[str] | None = None
) -> tuple[int, int, int]:
    """(rows, checksum, rows not converted) of the source table; the rows whose key_id is in
    ``skip`` (those the run journaled as rejected, e.g. PostgreSQL refused a value mid-COPY
    that the conversion accepts) count as rejected, not as rows the target should hold."""
    hasher = make_row_hasher([c.pg_type for c in tp.columns], [c.notnull for c in tp.columns])
    skipped = set(skip or [])
    count = total = rejected = 0
    for key, row in source_rows(source, tp):
        if row is None or (skipped and key_id(key) in skipped):
            rejected += 1
            continue
        try:
            h = hasher(row)
        except (ConversionError, ValueError, TypeError, AttributeError, ArithmeticError):
            rejected += 1  # a value written since the run that no longer fits the plan
            continue
        count += 1
        total += h
    return count, total, rejected


def _key_text(tp: TablePlan, pk: list[int], canon: list[Callable[[Any], str]], row: Any) -> str:
    return ", ".join(
        f"{tp.columns[i].source}={canon[i](row[i]) if row[i] is not None else None}" for i in pk
    )


def diff_table(
    source: Path, target_url: str, tp: TablePlan
) -> tuple[list[str], list[str], list[str]]:
    """Keyed diff: (missing in target, extra in target, changed) as readable strings."""
    pk = _pk_columns(tp)
    canon = [canon_function(c.pg_type) for c in tp.columns]
    hasher = make_row_hasher([c.pg_type for c in tp.columns], [c.notnull for c in tp.columns])
    src: dict[str, tuple[int, list[Any]]] = {}
    for _k, row in source_rows(source, tp):
        if row is None:
            continue
        try:
            h = hasher(row)
            key = _key_text(tp, pk, canon, row) if pk else str(h)
        except (ConversionError, ValueError, TypeError, AttributeError, ArithmeticError):
            continue
        src[key] = (h, row) if len(src) < 2_000_000 else (h, [])
    key_sql = " || ', ' || ".join(
        f"'{tp.columns[i].source.replace(chr(39), chr(39) * 2)}=' || "
        f"coalesce({pg_canon_sql(tp.columns[i].target, tp.columns[i].pg_type)}, 'None')"
        for i in pk
    )
    row_sql = pg_row_sql([(c.target, c.pg_type) for c in tp.columns])
    cols_sql = ", ".join(f"{pg_canon_sql(c.target, c.pg_type)}" for c in tp.columns)
    missing: list[str] = []
    extra: list[str] = []
    changed: list[str] = []
    seen: set[str] = set()
    with journal.connect(target_url) as conn:
        hash_sql = pg_hash_sql(row_sql)
        select = (
            f"SELECT {key_sql if pk else hash_sql + '::text'}, {hash_sql}, {cols_sql} "
            f"FROM {quote(tp.target)}"
        )
        for r in conn.execute(select):
            key, h, values = r[0], int(r[1]), r[2:]
            seen.add(key)
            if key not in src:
                if len(extra) < SAMPLE:
                    extra.append(f"{tp.source} ({key})")
                continue
            sh, srow = src[key]
            if sh != h and len(changed) < SAMPLE:
                cols = [
                    tp.columns[i].source
                    for i, v in enumerate(values)
                    if (canon[i](srow[i]) if srow and srow[i] is not None else None) != v
                ]
                changed.append(f"{tp.source} ({key}): column {', '.join(cols) or '?'} differs")
    for key in src:
        if key not in seen and len(missing) < SAMPLE:
            missing.append(f"{tp.source} ({key})")
    return missing, extra, changed


def verify(
    plan: Plan,
    target_url: str,
    entries: dict[str, journal.Entry],
    *,
    source: Path | None,
    jobs: int = 2,
    sums: Callable[[], dict[str, tuple[int, int, int]]] | None = None,
) -> VerifyResult:
    """Check the target against ``source`` (scanned now, except for the tables whose source
    (rows, checksum, unconvertible rows) ``sums()`` returns, computed from the same file: it is
    called once the target side of a table is summed, so both can run at once) or, with
    ``source=None``, against the checksums kept in the journal."""
    problems: list[str] = []
    checks: list[TableCheck] = []
    lock = threading.Lock()
    # without precomputed sums, each table's source side is hashed in a thread of its own
    # while PostgreSQL sums the target side (one waits on SQLite, the other on a socket)
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emrops-srchash")
    source_sums = (
        {
            tp.target: hashing.submit(srchash.source_checksum, source, tp, None, jobs)
            for tp in sorted(plan.tables, key=lambda t: -t.rows)  # the longest first
        }
        if sums is None and source is not None
        else {}
    )

    # the tables are summed ``jobs`` at a time, each over ``parts`` connections: at most
    # ``jobs`` connections in all (jobs * jobs would outrun a small server's limit)
    parts = max(1, jobs // max(1, min(jobs, len(plan.tables))))

    def one(tp: TablePlan) -> None:
        entry = entries.get(f"table:{tp.target}")
        t_rows, t_sum = target_checksum_split(target_url, tp, parts)
        known = sums() if sums is not None else {}
        journaled = rejected_ids(entry.detail or {}) if entry else []
        if journaled and source is not None:
            # rows the run rejected are skipped by key (the fast hashes would count them)
            s_rows, s_sum, rejected = source_checksum(source, tp, journaled)
        elif tp.target in known:
            s_rows, s_sum, rejected = known[tp.target]
        elif tp.target in source_sums:
            s_rows, s_sum, rejected = source_sums[tp.target].result()
        elif source is not None:
            s_rows, s_sum, rejected = srchash.source_checksum(source, tp)
        else:
            s_rows = entry.rows if entry and entry.rows is not None else -1
            s_sum = entry.checksum if entry and entry.checksum is not None else 0
            rejected = entry.rejected if entry else 0
        check = TableCheck(tp.source, s_rows, t_rows, rejected, s_sum == t_sum)
        if not check.ok and source is not None:
            check.missing, check.extra, check.changed = diff_table(source, target_url, tp)
        with lock:
            checks.append(check)
            if check.source_rows != check.target_rows:
                problems.append(
                    f"{tp.source}: {check.source_rows} rows in the source, "
                    f"{check.target_rows} in the target"
                )
            elif not check.checksum_ok:
                problems.append(f"{tp.source}: content checksum differs")
            problems.extend(f"missing in target: {m}" for m in check.missing)
            problems.extend(f"extra in target: {m}" for m in check.extra)
            problems.extend(f"changed: {m}" for m in check.changed)
            if entry and source is not None and rejected != entry.rejected:
                problems.append(
                    f"{tp.source}: {rejected} rows cannot be converted now, "
                    f"{entry.rejected} were rejected by the run"
                )

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for f in [pool.submit(one, tp) for tp in plan.tables]:
                f.result()
    finally:
        for pending in source_sums.values():
            pending.cancel()
        hashing.shutdown(wait=True)
    checks.sort(key=lambda c: c.table)
    with journal.connect(target_url) as conn:
        problems.extend(_inventory(conn, plan))
    return VerifyResult(checks, problems)


def _inventory(conn: psycopg.Connection, plan: Plan) -> list[str]:
    problems = []
    constraints = {
        (r[0], r[1]): r[2]
        for r in conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, c.convalidated FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema()"
        )
    }
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    views = {
        r[0]
        for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = current_schema()")
    }
    for tp in plan.tables:
        for obj in tp.post:
            if obj.kind == "index" and obj.name not in indexes:
                problems.append(f"index {obj.name} on {tp.target} is missing")
            elif (
                obj.kind in ("pk", "unique", "check")
                and (quote(tp.target), obj.name) not in constraints
                and (tp.target, obj.name) not in constraints
            ):
                problems.append(f"{obj.kind} constraint {obj.name} on {tp.target} is missing")
            elif obj.kind == "identity":
                problems.extend(_sequence(conn, tp.target, obj.name))
    for fk in plan.fks:
        valid = constraints.get((quote(fk.table), fk.name), constraints.get((fk.table, fk.name)))
        if valid is None:
            problems.append(f"foreign key {fk.name} on {fk.table} is missing")
        elif not valid:
            problems.append(f"foreign key {fk.name} on {fk.table} is NOT VALID (orphan rows)")
    for v in plan.views:
        if v.target not in views:
            problems.append(f"view {v.target} is missing")
    triggers = {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
        )
    }
    for t in plan.triggers:
        if t.error:
            problems.append(f"trigger {t.source} on {t.table} was not translated: {t.error}")
        elif t.function_sql and (t.table, t.target) not in triggers:  # ours, not --cast's
            problems.append(f"trigger {t.target} on {t.table} is missing")
    return problems


def _sequence(conn: psycopg.Connection, table: str, column: str) -> list[str]:
    seq = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (quote(table), column)).fetchone()
    if not seq or not seq[0]:
        return [f"{table}.{column} has no identity sequence"]
    state = conn.execute(f"SELECT last_value, is_called FROM {seq[0]}").fetchone()
    assert state is not None
    last, called = state
    nxt = last + 1 if called else last
    top_row = conn.execute(f"SELECT max({quote(column)}) FROM {quote(table)}").fetchone()
    top = top_row[0] if top_row else None
    if top is not None and nxt <= top:
        return [f"{table}.{column}: identity would hand out {nxt}, but max is {top}"]
    return []
