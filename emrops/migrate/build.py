"""After the copy: keys, constraints, indexes, identities, ANALYZE, foreign keys and views.

Every object runs in its own transaction and is journaled done or failed (with PostgreSQL's
error), so the step is idempotent and ``--resume`` skips what is done. Index builds are the
costly part: all of them (primary keys and UNIQUE constraints built as their unique index,
then attached with ``ADD CONSTRAINT ... USING INDEX``, which gives the same constraint) run
``jobs`` at a time across tables, largest table first; then each table gets its constraints,
its CHECKs in one ALTER TABLE (one scan; one by one only when that fails, to name the
culprit), identities and ANALYZE; then foreign keys (NOT VALID, then VALIDATE) and views.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from emrops.migrate import journal
from emrops.migrate.plan import Plan, PostObject, TablePlan
from emrops.migrate.reflect import quote
from emrops.migrate.sql import missing_check


def _do(
    conn: psycopg.Connection,
    entries: dict[str, journal.Entry],
    failed: list[str],
    item: str,
    kind: str,
    sql: str,
    label: str,
) -> bool:
    """Run one object's DDL in its own transaction and journal it done or failed."""
    e = entries.get(item)
    if e is not None and e.state == "done" and kind != "identity":
        return True
    try:
        with conn.transaction():
            conn.execute(sql)
            journal.put(conn, item, "object", "done", detail={"kind": kind})
        return True
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable):
        journal.put(conn, item, "object", "done", detail={"kind": kind})
        return True
    except psycopg.Error as exc:
        raise_if_lost(conn, exc)
        msg = _error(exc)
        journal.put(conn, item, "object", "failed", detail={"kind": kind, "error": msg})
        failed.append(f"{label}: {msg}")
        return False


def raise_if_lost(conn: psycopg.Connection, exc: psycopg.Error) -> None:
    """A lost connection (server restarted, backend terminated, network) is no failure of the
    object being built: the step stops (:func:`journal.lost`) and ``--resume`` builds what is
    not done. It was journaled as the object's failure on the dead connection, which ended
    the run in 'unexpected OperationalError: the connection is closed'."""
    doing = "building keys, indexes and views"
    gone = journal.lost(exc, doing)
    if gone is None and (conn.closed or conn.broken):
        gone = journal.lost(psycopg.OperationalError(_error(exc)), doing)
    if gone is not None:
        raise gone from None


def _key_columns(t: TablePlan, obj: PostObject) -> str | None:
    """The column list of a planned PRIMARY KEY/UNIQUE constraint (None if not recognised)."""
    word = "PRIMARY KEY" if obj.kind == "pk" else "UNIQUE"
    prefix = f"ALTER TABLE {quote(t.target)} ADD CONSTRAINT {quote(obj.name)} {word} ("
    if obj.sql.startswith(prefix) and obj.sql.endswith(")"):
        return obj.sql[len(prefix) : -1]
    return None


def _item(t: TablePlan, obj: PostObject) -> str:
    return f"object:{t.target}:{obj.kind}:{obj.name}"


def _label(t: TablePlan, obj: PostObject) -> str:
    return f"{obj.kind} {obj.name} on {t.target}"


def _error(exc: psycopg.Error) -> str:
    """PostgreSQL's message, with its detail (e.g. the key a foreign key misses)."""
    msg = str(exc).strip().splitlines()[0]
    detail = exc.diag.message_detail
    return f"{msg}: {detail}" if detail else msg


SORT_MEMORY_MB = 256  # per index build; most servers default to 64 MB


def _build_session(conn: psycopg.Connection, jobs: int) -> None:
    """Give this session's index builds room to sort in memory (an index of a million rows
    then builds a fifth faster here; a server set higher keeps its own setting), and, when
    ``jobs`` builds run at once, no parallel workers of their own (two builds with two
    workers each took a third more CPU for no gain on two cores)."""
    row = conn.execute("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))").fetchone()
    if row is not None and row[0] < SORT_MEMORY_MB * 1024 * 1024:
        conn.execute(f"SET maintenance_work_mem = '{SORT_MEMORY_MB}MB'")
    if jobs > 1:
        conn.execute("SET max_parallel_maintenance_workers = 0")


def build_objects(target: str, plan: Plan, jobs: int) -> list[str]:
    """Build everything the plan puts after the copy; returns the objects that failed."""
    failed: list[str] = []
    with journal.connect(target, autocommit=True) as conn:
        entries = journal.read(conn)

    def done(t: TablePlan, obj: PostObject) -> bool:
        e = entries.get(_item(t, obj))
        return e is not None and e.state == "done"

    index_failed: dict[str, str] = {}  # pk/unique whose unique index could not be built
    # one connection per worker thread for the whole build, not one per object: with
    # thousands of small tables, connecting cost more than building
    local = threading.local()
    opened: list[psycopg.Connection] = []
    opened_lock = threading.Lock()

    @contextlib.contextmanager
    def session() -> Iterator[psycopg.Connection]:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = journal.connect(target, autocommit=True)
            _build_session(conn, jobs)
            local.conn = conn
            with opened_lock:
                opened.append(conn)
        yield conn

    def build_index(t: TablePlan, obj: PostObject) -> None:
        with session() as conn:
            if obj.kind == "index":
                _do(conn, entries, failed, _item(t, obj), obj.kind, obj.sql, _label(t, obj))
                return
            cols = _key_columns(t, obj)
            try:
                conn.execute(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(obj.name)} "
                    f"ON {quote(t.target)} ({cols})"
                )
            except psycopg.Error as exc:
                raise_if_lost(conn, exc)
                index_failed[_item(t, obj)] = _error(exc)

    def finish_table(t: TablePlan) -> None:
        with session() as conn:
            for obj in t.post:
                if obj.kind not in ("pk", "unique"):
                    continue
                item = _item(t, obj)
                if item in index_failed:
                    msg = index_failed[item]
                    journal.put(
                        conn, item, "object", "failed", detail={"kind": obj.kind, "error": msg}
                    )
                    failed.append(f"{_label(t, obj)}: {msg}")
                    continue
                sql = obj.sql
                if _key_columns(t, obj) is not None:
                    word = "PRIMARY KEY" if obj.kind == "pk" else "UNIQUE"
                    sql = (
                        f"ALTER TABLE {quote(t.target)} ADD CONSTRAINT {quote(obj.name)} "
                        f"{word} USING INDEX {quote(obj.name)}"
                    )
                _do(conn, entries, failed, item, obj.kind, sql, _label(t, obj))
            checks = [o for o in t.post if o.kind == "check" and not done(t, o)]
            if len(checks) > 1:
                adds = ", ".join(
                    o.sql.split(f"ALTER TABLE {quote(t.target)} ", 1)[1] for o in checks
                )
                try:
                    with conn.transaction():
                        conn.execute(f"ALTER TABLE {quote(t.target)} {adds}")
                        for o in checks:
                            journal.put(
                                conn, _item(t, o), "object", "done", detail={"kind": "check"}
                            )
                    checks = []
                except psycopg.Error as exc:
                    raise_if_lost(conn, exc)  # else one by one below, naming the failing one
            for o in checks:
                _do(conn, entries, failed, _item(t, o), o.kind, o.sql, _label(t, o))
            for o in t.post:
                if o.kind not in ("pk", "unique", "index", "check"):
                    _do(conn, entries, failed, _item(t, o), o.kind, o.sql, _label(t, o))
            try:
                conn.execute(f"ANALYZE {quote(t.target)}")
            except psycopg.Error as exc:
                raise_if_lost(conn, exc)
                raise

    def validate(fk: Any) -> None:
        item = f"object:{fk.table}:fk:{fk.name}"
        with journal.connect(target, autocommit=True) as tconn:
            try:
                tconn.execute(fk.validate)
            except psycopg.Error as exc:
                raise_if_lost(tconn, exc)
                msg = _error(exc)
                journal.put(tconn, item, "object", "failed", detail={"kind": "fk", "error": msg})
                failed.append(f"foreign key {fk.name} on {fk.table} left NOT VALID: {msg}")

    tables = sorted(plan.tables, key=lambda t: t.rows, reverse=True)
    indexes = [
        (t, o)
        for t in tables
        for o in t.post
        if (o.kind == "index" or (o.kind in ("pk", "unique") and _key_columns(t, o) is not None))
        and not done(t, o)
    ]
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for f in [pool.submit(build_index, t, o) for t, o in indexes]:
                f.result()
            for f in [pool.submit(finish_table, t) for t in tables]:
                f.result()
    finally:
        for conn in opened:
            conn.close()
    with journal.connect(target, autocommit=True) as conn:
        added = [
            fk
            for fk in plan.fks
            if _do(
                conn,
                entries,
                failed,
                f"object:{fk.table}:fk:{fk.name}",
                "fk",
                fk.sql,
                f"foreign key {fk.name} on {fk.table}",
            )
            and fk.validate
        ]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for f in [pool.submit(validate, fk) for fk in added]:
                f.result()
        pending = list(plan.views)
        for _attempt in range(len(pending) + 1):  # views may depend on later views
            errors: dict[str, str] = {}
            for v in list(pending):
                try:
                    with conn.transaction():
                        conn.execute(f"CREATE OR REPLACE VIEW {quote(v.target)} AS {v.sql}")
                        journal.put(conn, f"view:{v.target}", "view", "done")
                    pending.remove(v)
                except psycopg.Error as exc:
                    raise_if_lost(conn, exc)
                    errors[v.target] = str(exc).strip().splitlines()[0]
            if not pending or not errors:
                break
        for v in pending:
            journal.put(
                conn,
                f"view:{v.target}",
                "view",
                "failed",
                detail={"error": errors.get(v.target, "")},
            )
            failed.append(
                f"view {v.target} (SQLite SQL not translatable): {errors.get(v.target, '')}; "
                f"SQL sent: {v.sql}"
            )
        for t in plan.triggers:
            item = f"object:{t.table}:trigger:{t.target}"
            if t.error:
                journal.put(
                    conn, item, "object", "failed", detail={"kind": "trigger", "error": t.error}
                )
                failed.append(
                    f"trigger {t.source} on {t.table} not translated ({t.error}): {t.sql}"
                )
                continue
            if not t.trigger_sql:
                continue  # left out by the cast file
            _do(
                conn,
                entries,
                failed,
                item,
                "trigger",
                # a call to a function PostgreSQL lacks compiles in PL/pgSQL: refuse it here
                ";\n".join(
                    x
                    for x in (
                        t.calls and missing_check(t.calls),
                        *t.probes,  # EXPLAIN of each body statement (see sql.triggers.probes)
                        t.function_sql,
                        t.trigger_sql,
                    )
                    if x
                ),
                f"trigger {t.target} on {t.table}",
            )
    return failed
