"""COPY text built by SQLite must load exactly what the row-by-row path loads; the source
checksums computed partly in SQL must equal the exact ones; bad values are still caught."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from emrops.migrate import journal, sqlcopy, srchash
from emrops.migrate.copy import RejectWriter, ValueRejected, copy_table
from emrops.migrate.plan import Plan, TablePlan
from emrops.migrate.planner import build_plan, open_source
from emrops.migrate.reflect import quote
from emrops.migrate.verify import source_checksum, target_checksum
from tests.migrate.conftest import pg

TRICKY = [
    "",
    "plain",
    "back\\slash",
    "\\N",
    "tab\there",
    "new\nline",
    "cr\rlf\r\n",
    "ünï ✓ 𝄞",
    "\\.",
    "\x01\x7f ctl",
    "ends with backslash\\",
]


CLEAN = ["", "plain", "ünï ✓ 𝄞", "N"]


def _source(path: Path, rows: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL, note TEXT, "
        "flag BOOLEAN, blob BLOB, doc JSON, at DATETIME, ref CHAR(32), n INTEGER)"
    )
    values = []
    for i in range(1, rows + 1):
        # the first chunk holds nothing to escape (sent raw), the rest does (escaped in SQL)
        text = TRICKY[i % len(TRICKY)] if i > sqlcopy.CHUNK_ROWS else CLEAN[i % len(CLEAN)]
        values.append(
            (
                i,
                f"{text}#{i}",
                None if i % 3 == 0 else text,  # NULL and '' both present
                None if i % 5 == 0 else i % 2,
                None if i % 4 == 0 else (b"" if i % 4 == 1 else bytes([i % 256, 0, 255])),
                None if i % 6 == 0 else json.dumps({"k": text, "i": i}, ensure_ascii=i % 2 == 0),
                f"2024-01-02 03:04:05.{i % 1000000:06d}" if i % 7 else "2024-01-02T03:04:05Z",
                uuid.UUID(int=i, version=4).hex,  # a UUID's version and variant bits
                -(2**63) if i == 2 else i * 7,
            )
        )
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
    conn.commit()
    conn.close()
    return path


def _id_of(text: str) -> int:
    """A row of the second chunk whose note holds ``text`` (not NULL)."""
    want = TRICKY.index(text)
    start = sqlcopy.CHUNK_ROWS + 1
    return next(i for i in range(start, start + 100) if i % len(TRICKY) == want and i % 3)


def _plan(path: Path) -> Plan:
    conn = open_source(path)
    try:
        return build_plan(conn, {}, full=False)
    finally:
        conn.close()


def _create(url: str, tp: TablePlan) -> None:
    with journal.connect(url) as conn:
        journal.ensure(conn)
        conn.execute(tp.create_sql)
        conn.commit()


def _dump(url: str, tp: TablePlan) -> bytes:
    with pg(url) as conn, conn.cursor() as cur:
        out = bytearray()
        with cur.copy(f"COPY (SELECT * FROM {quote(tp.target)} ORDER BY id) TO STDOUT") as cp:
            for block in cp:
                out += block
        return bytes(out)


def test_sql_text_loads_the_same_bytes_as_the_row_path(tmp_path: Path, pg_url: str) -> None:
    # more rows than one chunk, so raw chunks, escaped chunks and the boundaries are all used
    src = _source(tmp_path / "src.db", sqlcopy.CHUNK_ROWS + 1234)
    tp = _plan(src).tables[0]
    assert all(c.fast for c in tp.columns)
    assert sqlcopy.line_sql(tp) is not None
    assert [c.pg_type for c in tp.columns][1:] == [
        "text",
        "text",
        "boolean",
        "bytea",
        "jsonb",
        "timestamptz",
        "uuid",
        "bigint",
    ]
    with sqlite3.connect(src) as conn:
        chunks = list(sqlcopy.chunks(conn, tp, first=sqlcopy.CHUNK_ROWS))
    assert [c.rows for c in chunks] == [sqlcopy.CHUNK_ROWS, 1234]
    assert all(c.data is not None for c in chunks)
    assert b"\\t" not in chunks[0].data and b"tab\\there" in chunks[1].data
    _create(pg_url, tp)
    by_sql = copy_table(src, pg_url, tp, rejects=None)
    sql_dump = _dump(pg_url, tp)
    by_rows = copy_table(src, pg_url, tp, rejects=None, sql_text=False)
    row_dump = _dump(pg_url, tp)
    assert by_sql.rows == by_rows.rows == sqlcopy.CHUNK_ROWS + 1234
    assert sql_dump == row_dump
    with pg(pg_url) as conn:
        # empty string and NULL stay apart; the literal text \N stays text; NULL bytea stays NULL
        assert conn.execute("SELECT count(*) FROM t WHERE note = ''").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM t WHERE note IS NULL").fetchone()[0] > 0
        bs_n = _id_of("\\N")
        assert conn.execute("SELECT note FROM t WHERE id = %s", (bs_n,)).fetchone()[0] == "\\N"
        assert conn.execute("SELECT count(*) FROM t WHERE blob IS NULL").fetchone()[0] == (
            (sqlcopy.CHUNK_ROWS + 1234) // 4
        )
        assert conn.execute("SELECT blob FROM t WHERE id = 5").fetchone()[0] == b""
        cr = _id_of("cr\rlf\r\n")
        assert conn.execute("SELECT body FROM t WHERE id = %s", (cr,)).fetchone()[0] == (
            f"cr\rlf\r\n#{cr}"
        )
        assert conn.execute("SELECT n FROM t WHERE id = 2").fetchone()[0] == -(2**63)
    # the source checksum computed partly in SQL equals the exact one, and PostgreSQL's
    assert srchash.eligible(tp)
    with sqlite3.connect(src) as conn:
        fast = srchash.fast_checksum(conn, tp)
    rows, exact, rejected = source_checksum(src, tp)
    assert fast == (rows, exact) and rejected == 0
    with pg(pg_url) as conn:
        assert target_checksum(conn, tp) == fast


def test_sql_text_rechecks_values_the_profile_vouched_for(tmp_path: Path, pg_url: str) -> None:
    """A NUL byte or invalid UTF-8 appearing after profiling (the plan is stale) is still
    caught: abort names the row, reject writes it and copies every other row."""
    src = _source(tmp_path / "src.db", 50)
    tp = _plan(src).tables[0]
    conn = sqlite3.connect(src)
    conn.execute("UPDATE t SET body = 'nul' || char(0) || 'byte' WHERE id = 20")
    conn.execute("UPDATE t SET note = CAST(x'6f6bff' AS TEXT) WHERE id = 31")
    conn.commit()
    conn.close()
    _create(pg_url, tp)
    with pytest.raises(ValueRejected, match=r"table t, row rowid=20, column body: .*NUL byte"):
        copy_table(src, pg_url, tp, rejects=None)
    with pg(pg_url) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    rejects = RejectWriter(tmp_path / "rejects.jsonl")
    result = copy_table(src, pg_url, tp, rejects=rejects)
    assert result.rows == 48 and sorted(result.rejected_keys) == [20, 31]
    with pg(pg_url) as c:
        ids = [r[0] for r in c.execute("SELECT id FROM t ORDER BY id")]
    assert ids == [i for i in range(1, 51) if i not in (20, 31)]
    # the fast checksum refuses such a table and the exact path skips the same two rows
    rows, _sum, rejected = srchash.source_checksum(src, tp)
    assert (rows, rejected) == (49, 1)  # the NUL row is text (hashable); invalid UTF-8 is not


def test_tables_needing_python_keep_the_row_path(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE f (id INTEGER PRIMARY KEY, x REAL)")
    conn.execute("CREATE TABLE w (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    conn.execute("INSERT INTO f VALUES (1, 1.1089281961459624e+303)")
    conn.execute("INSERT INTO w VALUES ('a', 'b')")
    conn.commit()
    conn.close()
    plan = _plan(path)
    by_name = {t.source: t for t in plan.tables}
    # a double SQLite's printf gets wrong is printed by the Python fallback
    # (test_sqlcopy_reals loads it bit for bit); WITHOUT ROWID is chunked by its primary key
    with sqlite3.connect(path) as conn:
        (chunk,) = sqlcopy.chunks(conn, by_name["f"], first=sqlcopy.CHUNK_ROWS)
        (kv,) = sqlcopy.chunks(conn, by_name["w"], first=sqlcopy.CHUNK_ROWS)
    assert chunk.data == b"1\t1.1089281961459624e+303\n"
    assert kv.data == b"a\tb\n" and (kv.after, kv.hi) == (None, None)


def _without_rowid(path: Path, rows: int) -> Path:
    """A WITHOUT ROWID table keyed by (NOCASE text, integer): chunk boundaries fall inside runs
    of equal first key columns, and the key order is SQLite's (case-blind), not Python's."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE w (a TEXT COLLATE NOCASE NOT NULL, b INTEGER NOT NULL, v TEXT, n REAL, "
        "PRIMARY KEY (a, b)) WITHOUT ROWID"
    )
    values = []
    for i in range(rows):
        a = ("Key", "key2", "KEY3", "ä")[i % 4] + str(i % 7)
        b = i * 7919 % rows
        text = TRICKY[i % len(TRICKY)] if i > rows // 2 else CLEAN[i % len(CLEAN)]
        values.append((a, b, None if i % 5 == 0 else text, i / 7))
    conn.executemany("INSERT INTO w VALUES (?, ?, ?, ?)", values)
    conn.commit()
    conn.close()
    return path


def test_without_rowid_chunks_by_primary_key(tmp_path: Path, pg_url: str) -> None:
    rows = 2 * sqlcopy.CHUNK_ROWS + 77
    src = _without_rowid(tmp_path / "w.db", rows)
    tp = _plan(src).tables[0]
    assert tp.without_rowid and sqlcopy.line_sql(tp) is not None
    with sqlite3.connect(src) as conn:
        got = list(sqlcopy.chunks(conn, tp, rows=997, first=997))
        in_order = conn.execute("SELECT count(*) FROM w").fetchone()[0]
    assert [c.rows for c in got] == [997] * (rows // 997) + [rows % 997]
    assert sum(c.rows for c in got) == in_order == rows
    assert all(c.data is not None for c in got)
    assert all(a.hi == b.after for a, b in zip(got, got[1:], strict=False))
    with pg(pg_url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")  # NOCASE text
    _create(pg_url, tp)
    copy_table(src, pg_url, tp, rejects=None)
    order = 'ORDER BY a::text COLLATE "C", b'

    def dump() -> list[tuple]:
        with pg(pg_url) as conn:
            return conn.execute(f"SELECT a, b, v, n FROM w {order}").fetchall()

    by_sql = dump()
    copy_table(src, pg_url, tp, rejects=None, sql_text=False)
    assert dump() == by_sql and len(by_sql) == rows
    assert srchash.source_checksum(src, tp)[:2] == source_checksum(src, tp)[:2]
    with pg(pg_url) as conn:
        assert target_checksum(conn, tp) == source_checksum(src, tp)[:2]


def test_profile_counts_through_an_index_exactly(tmp_path: Path) -> None:
    """A column leading a BINARY index is profiled over its distinct values; the counts must be
    those of a plain scan (a NOCASE index must not be used: it merges distinct values)."""
    from emrops.migrate.profile import _aggregate_sql, profile_table
    from emrops.migrate.reflect import reflect

    path = tmp_path / "p.db"
    conn = sqlite3.connect(path)
    for name, index in (("a", ""), ("b", ""), ("c", " COLLATE NOCASE")):
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, ref CHAR(32), tag VARCHAR(8))")
        if name != "a":
            conn.execute(f"CREATE INDEX {name}_ref ON {name} (ref{index}, id)")
            conn.execute(f"CREATE INDEX {name}_tag ON {name} (tag{index})")
        values = [
            (
                uuid.UUID(int=i % 7, version=4).hex
                if i % 5
                else uuid.UUID(int=i % 7, version=4).hex.upper(),
                ["x", "X", "y\x00", None, 3][i % 5],
            )
            for i in range(200)
        ]
        values += [(None, "ok"), (7, "abcdefgh"), ("not-a-uuid", "é")]
        conn.executemany(f"INSERT INTO {name} (ref, tag) VALUES (?, ?)", values)
    conn.commit()
    schema = {t.name: t for t in reflect(conn).tables}
    profiles = {n: profile_table(conn, schema[n], set()).columns for n in ("a", "b", "c")}
    item = [("ref", "count", 'count("ref")')]
    assert "GROUP BY" in (_aggregate_sql(conn, schema["b"], "ref", item) or "")
    assert _aggregate_sql(conn, schema["c"], "ref", item) is None  # NOCASE: a plain scan
    assert _aggregate_sql(conn, schema["a"], "ref", item) is None  # no index: a plain scan
    conn.close()
    assert profiles["a"] == profiles["b"] == profiles["c"]
    ref = profiles["a"]["ref"]
    assert (ref.n_text, ref.n_int, ref.n_null, ref.n_uuid) == (202, 0, 1, 200)  # 7 is text
    assert profiles["a"]["tag"].n_nul == 40


def test_source_checksum_in_parts_equals_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big table is hashed as rowid ranges by several processes; the sum must not change."""
    src = _source(tmp_path / "src.db", 3000)
    tp = _plan(src).tables[0]
    whole = srchash.source_checksum(src, tp)
    monkeypatch.setattr(srchash, "SPLIT_ROWS", 100)
    ranges = srchash._rowid_ranges(src, tp, 3)
    assert ranges is not None and len(ranges) == 3
    assert ranges[0][0] == -(2**63) and ranges[-1][1] == 2**63 - 1  # every rowid is covered
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert srchash.source_checksum(src, tp, parts=3) == whole
    assert whole[0] == 3000 and whole[2] == 0


def test_chunks_escape_only_where_needed_and_switch_back(tmp_path: Path) -> None:
    """A chunk needing escaping is rebuilt escaped and the next one is built escaped at once;
    one in which escaping changed nothing switches back to raw. Every chunk's bytes are the
    COPY text of its rows either way."""
    path = tmp_path / "esc.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT)")
    special = range(150, 260)  # chunks 2 and 3 of 100 rows hold tabs, newlines, backslashes

    def text(i: int) -> str:
        return f"v{i}\t\\x\n\r" if i in special else f"v{i}"

    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [
            (i, text(i), None if i % 7 == 0 else "b\\N" if i in special else "b")
            for i in range(1, 501)
        ],
    )
    conn.commit()
    tp = _plan(path).tables[0]
    queries: list[str] = []
    conn.set_trace_callback(queries.append)

    def esc(v: str | None) -> str:
        if v is None:
            return "\\N"
        return (
            v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        )

    got = list(sqlcopy.chunks(conn, tp, rows=100, first=100))
    conn.set_trace_callback(None)
    rows = conn.execute("SELECT id, a, b FROM t ORDER BY id").fetchall()
    want = "".join(f"{i}\t{esc(a)}\t{esc(b)}\n" for i, a, b in rows).encode()
    assert b"".join(c.data or b"" for c in got) == want
    assert [c.rows for c in got] == [100] * 5
    kinds = ["escaped" if "replace(" in q else "raw" for q in queries if "group_concat" in q]
    # chunk 1 raw; 2 raw, then rebuilt escaped; 3 escaped (it needed it); 4 escaped (it did
    # not); 5 raw; then the query finding no more rows
    assert kinds == ["raw", "raw", "escaped", "escaped", "escaped", "raw", "raw"]
    # a NUL byte in a chunk built escaped at once still sends that chunk row by row
    conn.execute("UPDATE t SET a = 'nul' || char(0) || 'byte' WHERE id = 320")
    assert [c.data is None for c in sqlcopy.chunks(conn, tp, rows=100, first=100)] == [
        False,
        False,
        False,
        True,
        False,
    ]
    conn.close()
