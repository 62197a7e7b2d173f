"""Copy tables from an SQLite file into PostgreSQL with COPY, several tables in parallel.

Rows stream from SQLite in chunks straight into ``COPY ... FROM STDIN``, so memory stays flat:
as COPY text formatted by SQLite (:mod:`emrops.migrate.sqlcopy`) when no value needs a
conversion, else row by row through psycopg 3 ``write_row`` after converting the values the
plan says. A table's COPY and its row count are committed in one transaction with its journal
row. (The source side of verification is hashed separately from the same snapshot, see
:mod:`emrops.migrate.srchash`.)
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops import atomic
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import CheckFailed, EmropsError, ExitCode
from emrops.migrate import journal, refusals, sqlcopy
from emrops.migrate.convert import CONVERT, ConversionError
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.reflect import quote
from emrops.migrate.refusals import RowsLost, check_loaded  # noqa: F401 - re-exported

BATCH = 5000

Progress = Callable[[str, int, int], None]  # (table, rows done, rows total)


class CopyFailed(EmropsError):
    """COPY failed on the PostgreSQL side (the table's transaction is rolled back)."""


class ValueRejected(CheckFailed):
    """A value could not be converted and ``--on-error abort`` is in force (exit 3)."""


@dataclass
class TableResult:
    table: str
    rows: int
    rejected: int
    seconds: float
    rejected_keys: list[Any] = field(default_factory=list)


class RejectWriter:
    """Appends rejected rows as JSON lines (thread-safe)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=repr, ensure_ascii=False)
        with self._lock:
            atomic.append_line(self.path, line, mode=0o600)  # rejected rows are data
            self.count += 1


def source_select(
    tp: TablePlan, *, after: bool = False, text_as_bytes: bool = False, between: bool = False
) -> str:
    """SELECT of a table's rows in key order (rowid first for rowid tables); ``after`` adds
    ``rowid > ?``, ``between`` adds ``rowid BETWEEN ? AND ?``; ``text_as_bytes`` reads text
    undecoded (to find invalid UTF-8)."""
    cols = []
    for c in tp.columns:
        q = quote(c.source)
        if c.select_blob:
            cols.append(f"CAST({q} AS BLOB)")
        elif text_as_bytes:
            cols.append(f"CASE WHEN typeof({q}) = 'text' THEN CAST({q} AS BLOB) ELSE {q} END")
        else:
            cols.append(q)
    if tp.without_rowid:
        order = ", ".join(quote(k) for k in tp.key)
        return f"SELECT {', '.join(cols)} FROM {quote(tp.source)} ORDER BY {order}"
    r = quote(tp.key[0])  # "rowid", or "_rowid_"/"oid" when a column is named rowid
    where = f" WHERE {r} > ?" if after else (f" WHERE {r} BETWEEN ? AND ?" if between else "")
    return f"SELECT {r}, {', '.join(cols)} FROM {quote(tp.source)}{where} ORDER BY {r}"


BadText = Callable[[Any, str, bytes], None]  # (key, column, raw value): reject or raise


def read_batches(src: sqlite3.Connection, tp: TablePlan, on_bad: BadText) -> Iterator[list]:
    """Batches of source rows. Text is decoded by sqlite3 at C speed; when a batch holds invalid
    UTF-8 (sqlite3 then fails the whole fetch), that stretch is re-read as bytes and decoded
    value by value: bad rows go to ``on_bad`` and are skipped, and reading carries on."""
    after: int | None = None
    texty = [i for i, c in enumerate(tp.columns) if not c.select_blob]
    while True:
        cur = src.execute(
            source_select(tp, after=after is not None), ((after,) if after is not None else ())
        )
        try:
            while True:
                batch = cur.fetchmany(BATCH)
                if not batch:
                    return
                if not tp.without_rowid:
                    after = batch[-1][0]
                yield batch
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc).lower() or tp.without_rowid:
                raise
        sql = source_select(tp, after=after is not None, text_as_bytes=True) + f" LIMIT {BATCH}"
        raw = src.execute(sql, (after,) if after is not None else ()).fetchall()
        if not raw:
            return
        clean = [v for row in raw if (v := _decoded(row, tp, texty, on_bad)) is not None]
        after = raw[-1][0]
        yield clean


def read_range(src: sqlite3.Connection, tp: TablePlan, lo: int, hi: int, on_bad: BadText):
    """The rows of a rowid table with ``lo <= rowid <= hi``, text decoded value by value: a row
    holding invalid UTF-8 goes to ``on_bad`` and is skipped."""
    texty = [i for i, c in enumerate(tp.columns) if not c.select_blob]
    for row in src.execute(source_select(tp, text_as_bytes=True, between=True), (lo, hi)):
        values = _decoded(row, tp, texty, on_bad)
        if values is not None:
            yield values


def _decoded(row: tuple, tp: TablePlan, texty: list[int], on_bad: BadText) -> tuple | None:
    """``row`` (rowid first) with its text columns decoded; None after reporting a column
    holding invalid UTF-8 to ``on_bad``."""
    values = list(row)
    for i in texty:
        v = values[i + 1]
        if isinstance(v, bytes):
            try:
                values[i + 1] = v.decode("utf-8")
            except UnicodeDecodeError:
                on_bad(row[0], tp.columns[i].source, v)
                return None
    return tuple(values)


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
                    f"table {tp.source}, row {_key_text(tp, key_of(row))}, column {name}: "
                    f"cannot convert {_show(v)} to {tp.columns[i].pg_type}: {err}",
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


def _key_text(tp: TablePlan, key: Any) -> str:
    if isinstance(key, dict):
        return ", ".join(f"{k}={v!r}" for k, v in key.items())
    return f"{tp.key[0]}={key}"


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        text = v.decode("utf-8", errors="backslashreplace")
        return repr(text[:80])
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def copy_table(
    source: Path,
    target_url: str,
    tp: TablePlan,
    *,
    rejects: RejectWriter | None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    sql_text: bool = True,
    refused: dict[str, tuple[str, str]] | None = None,
) -> TableResult:
    """Copy one table (TRUNCATE first, so a retried table starts clean) and journal it.
    ``sql_text=False`` forces the row-by-row path (the tests compare both).

    A value PostgreSQL refuses during the COPY (a data error the profile did not foresee)
    fails the table naming the row, the column and PostgreSQL's message; with ``rejects``,
    that row is rejected instead and the table copied again without it (``refused``: the
    keys refused so far, by ``repr``, with the error)."""
    started = time.monotonic()
    src = open_sqlite(source, check_same_thread=False)
    rejected_keys: list[Any] = []
    held: list[dict[str, Any]] = []  # reject entries, written once the table commits
    refused = refused if refused is not None else {}
    sent: list[Any] = []  # keys in COPY line order, to name a row PostgreSQL refuses
    chunks_sent: list[tuple[int, int, int]] = []  # (first line, lo, hi) of SQL-built chunks

    def on_reject(key: Any, column: str, value: Any, err: str) -> None:
        rejected_keys.append(key)
        assert rejects is not None
        held.append(
            {"table": tp.source, "key": key, "column": column, "value": _show(value), "error": err}
        )

    base_convert = row_converter(tp, on_reject if rejects is not None else None)
    offset = 0 if tp.without_rowid else 1
    pk_pos = [i for i, c in enumerate(tp.columns) if c.source in tp.key]

    def key_of(row: tuple) -> Any:
        return row[0] if offset else {tp.columns[i].source: row[i] for i in pk_pos}

    def convert(row: tuple) -> tuple | None:
        key = key_of(row)
        if refused and repr(key) in refused:
            on_reject(key, *refusals.refused_value(tp, row, offset, refused[repr(key)]))
            return None
        out = base_convert(row)
        if out is not None and rejects is not None:
            sent.append(key)
        return out

    def on_bad(key: Any, column: str, value: bytes) -> None:
        err = "text is not valid UTF-8"
        if rejects is None:
            raise ValueRejected(
                f"table {tp.source}, row {_key_text(tp, key)}, column {column}: cannot convert "
                f"{_show(value)} to text: {err}",
                hint='add a cast rule type = "bytea" for the column (--cast), or rerun with '
                "--on-error reject",
            )
        on_reject(key, column, value, err)

    line_sql = sqlcopy.line_sql(tp) if sql_text else None
    cols = ", ".join(quote(c.target) for c in tp.columns)
    total = 0

    def tick() -> None:
        if progress:
            progress(tp.target, total + len(rejected_keys), tp.rows)
        if stop is not None and stop.is_set():
            raise CopyFailed(f"copy of {tp.source} stopped: another table failed")

    try:
        with journal.connect(target_url) as conn:
            with conn.cursor() as cur:
                cur.execute(f"TRUNCATE {quote(tp.target)}")
                with cur.copy(f"COPY {quote(tp.target)} ({cols}) FROM STDIN (FREEZE)") as cp:
                    write = cp.write_row
                    if line_sql is not None:
                        strict_base = row_converter(
                            tp, on_reject if rejects is not None else None, strict=True
                        )

                        def strict(row: tuple) -> tuple | None:
                            if refused and repr(row[0]) in refused:
                                on_reject(
                                    row[0],
                                    *refusals.refused_value(tp, row, 1, refused[repr(row[0])]),
                                )
                                return None
                            out = strict_base(row)
                            if out is not None and rejects is not None:
                                sent.append(row[0])
                            return out

                        refused_rowids = [int(k) for k in refused if refusals.INT.fullmatch(k)]
                        for chunk in sqlcopy.chunks(src, tp):
                            hit = any(chunk.lo <= k <= chunk.hi for k in refused_rowids)
                            if chunk.data is not None and not hit:
                                if rejects is not None:
                                    chunks_sent.append((len(sent) + 1, chunk.lo, chunk.hi))
                                    sent.extend([None] * chunk.rows)
                                cp.write(chunk.data)
                                total += chunk.rows
                            else:  # something unexpected: row by row, every value converted
                                for row in read_range(src, tp, chunk.lo, chunk.hi, on_bad):
                                    out = strict(row)
                                    if out is not None:
                                        write(out)
                                        total += 1
                            tick()
                    else:
                        for batch in read_batches(src, tp, on_bad):
                            for row in batch:
                                out = convert(row)
                                if out is None:
                                    continue
                                write(out)
                                total += 1
                            tick()
                # what arrived, counted by PostgreSQL (never what was sent)
                loaded = cur.rowcount
                check_loaded(tp, total, loaded)
            journal.put(
                conn,
                f"table:{tp.target}",
                "table",
                "copied",
                rows=loaded,
                rejected=len(rejected_keys),
                detail={
                    "rejected_keys": rejected_keys,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            conn.commit()
    except psycopg.Error as exc:
        line = refusals.copy_line(exc)
        key = None
        if line is not None:
            key = (
                refusals.line_key(src, tp, line, sent, chunks_sent)
                if rejects is not None
                else refusals.nth_key(src, tp, line)  # abort: every row read so far was sent
            )
        src.close()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = getattr(getattr(exc, "diag", None), "context", None) or ""
        data_error = (getattr(exc, "sqlstate", None) or "")[:2] in ("22", "23")
        if data_error and rejects is not None and key is not None and len(refused) < 1000:
            # reject that row and copy the table again without it (the attempt was rolled
            # back, nothing of it was journaled or written to the reject file)
            column = refusals.COLUMN.search(where)
            refused[repr(key)] = (column.group(1) if column else "", f"PostgreSQL: {msg}")
            return copy_table(
                source,
                target_url,
                tp,
                rejects=rejects,
                progress=progress,
                stop=stop,
                sql_text=sql_text,
                refused=refused,
            )
        sql = f"COPY {quote(tp.target)} ({cols}) FROM STDIN"
        row = f", row {_key_text(tp, key)}" if key is not None else ""
        failure = CopyFailed(
            f"COPY into {tp.target} failed{row}: {msg}"
            + (f" ({where.splitlines()[0]})" if where else "")
            + f"; SQL: {sql}",
            hint="the table was rolled back; add a cast rule for the column (--cast) or rerun "
            "with --on-error reject to write such rows to the reject file, then --resume",
        )
        if data_error:
            failure.exit_code = ExitCode.CHECK_FAILED
        raise failure from None
    finally:
        src.close()
    if rejects is not None:
        for entry in held:
            rejects.write(entry)
    return TableResult(
        tp.target,
        total,
        len(rejected_keys),
        time.monotonic() - started,
        rejected_keys,
    )


def copy_tables(
    source: Path,
    target_url: str,
    tables: list[TablePlan],
    *,
    jobs: int,
    rejects: RejectWriter | None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[TableResult]:
    """Copy ``tables`` (largest first) with ``jobs`` workers; the first failure stops the rest,
    and so does ``stop`` being set (by the caller)."""
    if stop is None:
        stop = threading.Event()
    results: list[TableResult] = []
    if not tables:
        return results
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="emrops-copy") as pool:
        futures = [
            pool.submit(
                copy_table,
                source,
                target_url,
                t,
                rejects=rejects,
                progress=progress,
                stop=stop,
            )
            for t in tables
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
            raise failed[0].exception()  # type: ignore[misc]
        results = [f.result() for f in futures]
    return results
