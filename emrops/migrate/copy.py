"""Copy tables from an SQLite file into PostgreSQL with COPY, several tables in parallel.

Rows stream from SQLite in chunks straight into ``COPY ... FROM STDIN``, so memory stays flat:
as COPY text formatted by SQLite (:mod:`emrops.migrate.sqlcopy`) when no value needs a
conversion, else row by row through psycopg 3 ``write_row`` after converting the values the
plan says. A table's COPY and its row count are committed in one transaction with its journal
row. (The source side of verification is hashed separately from the same snapshot, see
:mod:`emrops.migrate.srchash`.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops import atomic
from emrops.db.appdefs import register_stand_ins
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import EmropsError, ExitCode
from emrops.migrate import journal, refusals, rowsize, sqlcopy
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.reading import (  # noqa: F401 - source_select, read_batches re-exported
    BadText,
    key_getter,
    read_batches,
    read_range,
    source_select,
)
from emrops.migrate.reflect import quote
from emrops.migrate.refusals import RowsLost, check_loaded  # noqa: F401 - re-exported
from emrops.migrate.rowconv import (  # noqa: F401 - re-exported
    ValueRejected,
    key_id,
    key_text,
    null_keys,
    row_converter,
    show,
)

Progress = Callable[[str, int, int], None]  # (table, rows done, rows total)


class CopyFailed(EmropsError):
    """COPY failed on the PostgreSQL side (the table's transaction is rolled back)."""


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
            try:
                atomic.append_line(self.path, line, mode=0o600)  # rejected rows are data
            except OSError as exc:
                raise EmropsError(
                    f"cannot write the reject file {self.path}: {exc.strerror or exc}",
                    hint="free space there or choose another --reject-file, then --resume",
                ) from exc
            self.count += 1


NUL_ERROR = "text holds a NUL byte"


class _Unsendable(Exception):
    """psycopg refused a row's value before sending it (a NUL byte in text)."""

    def __init__(self, key: Any, column: ColumnPlan, value: str, message: str):
        super().__init__(message)
        self.key = key
        self.column = column.source
        self.target = column.target
        self.pg_type = column.pg_type
        self.value = value


def _unsendable(tp: TablePlan, key: Any, out: tuple, exc: psycopg.DataError) -> Exception:
    """What to raise when psycopg refuses a converted row before sending it: a NUL byte in a
    text value (psycopg's buffer then holds part of the row, so this COPY attempt ends) names
    its row and column; anything else is raised as it is."""
    for col, v in zip(tp.columns, out, strict=False):
        if isinstance(v, str) and "\x00" in v:
            return _Unsendable(key, col, v, str(exc))
    return exc


def _refused_in(tp: TablePlan, chunk: sqlcopy.Chunk, refused: dict[str, Any]) -> bool:
    """Whether a row an earlier attempt refused may lie in ``chunk`` (it then goes row by row,
    where the row is rejected by key). A WITHOUT ROWID key is compared by SQLite's collations,
    not Python's: with any refused key, every chunk of such a table goes row by row."""
    if not refused:
        return False
    if tp.without_rowid:
        return True
    rowids = [int(k) for k in refused if refusals.INT.fullmatch(k)]
    lo = chunk.after[0] if chunk.after is not None else None
    hi = chunk.hi[0] if chunk.hi is not None else None
    return any((lo is None or k > lo) and (hi is None or k <= hi) for k in rowids)


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
    register_stand_ins(src)
    rejected_keys: list[Any] = []
    held: list[dict[str, Any]] = []  # reject entries, written once the table commits
    refused = refused if refused is not None else {}
    sent: list[Any] = []  # keys in COPY line order, to name a row PostgreSQL refuses
    chunks_sent: list[tuple[int, Any, Any]] = []  # (first line, after, hi) of SQL-built chunks

    def on_reject(key: Any, column: str, value: Any, err: str) -> None:
        rejected_keys.append(key)
        assert rejects is not None
        held.append(
            {"table": tp.source, "key": key, "column": column, "value": show(value), "error": err}
        )

    offset = 0 if tp.without_rowid else 1
    key_of = key_getter(tp)

    def checked(base: Callable[[tuple], tuple | None]) -> Callable[[tuple], tuple | None]:
        """``base`` after the rows refused by an earlier attempt are rejected (by key)."""

        def convert(row: tuple) -> tuple | None:
            key = key_of(row)
            if refused and repr(key) in refused:
                on_reject(key, *refusals.refused_value(tp, row, offset, refused[repr(key)]))
                return None
            out = base(row)
            if out is not None and rejects is not None:
                sent.append(key)
            return out

        return convert

    reject = on_reject if rejects is not None else None
    convert = checked(row_converter(tp, reject))

    def on_bad(key: Any, column: str, value: bytes) -> None:
        err = "text is not valid UTF-8"
        if rejects is None:
            raise ValueRejected(
                f"table {tp.source}, row {key_text(tp, key)}, column {column}: cannot convert "
                f"{show(value)} to text: {err}",
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

    def again() -> TableResult:
        """The table copied again without the rows in ``refused`` (after a rejection)."""
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

    try:
        with journal.connect(target_url) as conn:
            with conn.cursor() as cur:
                cur.execute(f"TRUNCATE {quote(tp.target)}")
                with cur.copy(f"COPY {quote(tp.target)} ({cols}) FROM STDIN (FREEZE)") as cp:
                    write = cp.write_row
                    if line_sql is not None:
                        strict = checked(row_converter(tp, reject, strict=True))
                        for chunk in sqlcopy.chunks(src, tp):
                            if chunk.data is not None and not _refused_in(tp, chunk, refused):
                                if rejects is not None:
                                    chunks_sent.append((len(sent) + 1, chunk.after, chunk.hi))
                                    sent.extend([None] * chunk.rows)
                                cp.write(chunk.data)
                                total += chunk.rows
                            else:  # something unexpected: row by row, every value converted
                                for row in read_range(src, tp, chunk.after, chunk.hi, on_bad):
                                    out = strict(row)
                                    if out is not None:
                                        try:
                                            write(out)
                                        except psycopg.DataError as exc:
                                            raise _unsendable(tp, key_of(row), out, exc) from None
                                        total += 1
                            tick()
                    else:
                        for batch in read_batches(src, tp, on_bad):
                            for row in batch:
                                out = convert(row)
                                if out is None:
                                    continue
                                try:
                                    write(out)
                                except psycopg.DataError as exc:
                                    raise _unsendable(tp, key_of(row), out, exc) from None
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
                    "rejected_key_ids": [key_id(k) for k in rejected_keys],
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            conn.commit()
    except _Unsendable as bad:
        src.close()
        if rejects is None or len(refused) >= 1000:
            raise ValueRejected(
                f"table {tp.source}, row {key_text(tp, bad.key)}, column {bad.column}: cannot "
                f"convert {show(bad.value)} to {bad.pg_type}: {NUL_ERROR}",
                hint='add a cast rule type = "bytea" for the column (--cast), or rerun with '
                "--on-error reject to write such rows to a reject file",
            ) from None
        # reject that row and copy the table again without it (nothing of this attempt was
        # committed, journaled or written to the reject file)
        refused[repr(bad.key)] = (bad.target, NUL_ERROR)
        return again()
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
        # 22 data exception, 23 integrity: a value of the row on that line. 54 program limit
        # (a row too big for a page) is the data too, but it is raised when COPY flushes its
        # buffered rows, so the line is the last one read, not the row: nothing is named or
        # rejected by it
        state = getattr(exc, "sqlstate", None) or ""
        data_error = state[:2] in ("22", "23")
        too_big = state[:2] == "54"
        # 53: the server ran out of something (disk, memory, connections): not this row
        resources = state[:2] == "53"
        # 57014: cancelled (statement_timeout from PGOPTIONS or the URL, pg_cancel_backend)
        cancelled = state == "57014"
        if too_big or resources or cancelled:
            key = None
        if data_error and rejects is not None and key is not None and len(refused) < 1000:
            # reject that row and copy the table again without it (the attempt was rolled
            # back, nothing of it was journaled or written to the reject file)
            column = refusals.COLUMN.search(where)
            refused[repr(key)] = (column.group(1) if column else "", f"PostgreSQL: {msg}")
            return again()
        sql = f"COPY {quote(tp.target)} ({cols}) FROM STDIN"
        named = f", row {key_text(tp, key)}" if key is not None else ""
        hint = (
            "the table was rolled back; add a cast rule for the column (--cast) or rerun "
            "with --on-error reject to write such rows to the reject file, then --resume"
        )
        if too_big:
            hint = rowsize.HINT + " (`emrops migrate-db plan` names the rows)"
        elif state == "53100":
            hint = (
                "PostgreSQL's disk is full (the table was rolled back, its space is free "
                "again): make room for the target (the plan's size estimate, plus indexes), "
                "then continue with `emrops migrate-db run --resume`, or remove the partial "
                "migration with `emrops migrate-db rollback`"
            )
        elif resources:
            hint = (
                "PostgreSQL ran out of a resource (the table was rolled back): fix it on the "
                "server (memory, connections, limits), then `emrops migrate-db run --resume`"
            )
        elif cancelled:
            hint = (
                "PostgreSQL cancelled the COPY (a statement_timeout set in PGOPTIONS or the "
                "URL's options, or pg_cancel_backend); the table was rolled back: remove the "
                "timeout for the migration, then `emrops migrate-db run --resume`"
            )
        elif isinstance(exc, psycopg.OperationalError) and not data_error:
            # the server went away (restarted, backend terminated, network): not the data
            hint = (
                "the connection to PostgreSQL was lost and the table rolled back; once the "
                "server answers again, continue with `emrops migrate-db run --resume`"
            )
        failure = CopyFailed(
            f"COPY into {tp.target} failed{named}: {msg}"
            + (f" ({where.splitlines()[0]})" if where else "")
            + f"; SQL: {sql}",
            hint=hint,
        )
        if data_error or too_big:
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
