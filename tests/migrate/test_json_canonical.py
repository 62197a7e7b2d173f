"""JSON verified against jsonb: the source side's canonical text (the C-backed canon_jsonb)
equals PostgreSQL's jsonb::text on edge JSON, the table checksums of both sides agree, and a
changed value still fails verification."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate import srchash
from emrops.migrate.convert import ConversionError, _jsonb_reference, canon_jsonb
from emrops.migrate.copy import copy_table
from emrops.migrate.verify import target_checksum, verify
from tests.migrate.conftest import pg
from tests.migrate.test_canonical import _json_values
from tests.migrate.test_sqlcopy import _create, _plan

EDGE = [
    '{"b": 1, "a": 2, "aa": 3, "é": 4, "z": 5, "": 6}',  # jsonb order: byte length, then bytes
    '{"k": 1, "k": 2}',  # the last duplicate wins
    '{"x":{"k":"v","k":"w"},"y":[{"b":1,"a":[]}]}',
    '"\\u00e9\\u2028\\ud83d\\ude00 \\u0001\\u001f \\" \\\\ \\/ \\b\\f\\n\\r\\t"',
    '"raw é ✓ \x7f 𝄞"',
    "1.0",
    "1.50",
    "1e2",
    "1E+2",
    "-1.5e-3",
    "0.1e1",
    "-0",
    "-0.0",
    "-0e5",
    "123456789012345678901234567890",
    "12345678901234567890.123456789012345678901",
    "[1.0, 2.50, 1e2, -0, 3]",
    '  {\n\t"spaced" :  [ 1 , 2 ] ,"b":null }  ',
    "[]",
    "{}",
    '[[], {}, [[]], {"a": {}}]',
    "true",
    "null",
    '{"a": {"b": {"c": {"d": {"e": {"f": [1, {"g": 1e-2}]}}}}}}',
    '{"\\u0041\\u00e9": "key spelled with escapes"}',
    # whitespace on one side only: the scanner is called straight only without any
    " [1, 2.5]",
    '{"a": 1.25}\n',
    "\t7.50\r",
]


def test_edge_json_canonical_equals_jsonb_text(pg_url: str) -> None:
    values = EDGE + _json_values(random.Random(11))
    with pg(pg_url) as conn:
        for text in values:
            want = conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()[0]
            assert canon_jsonb(text) == want, text
            assert _jsonb_reference(text) == want, text


def test_canonical_rejects_what_jsonb_rejects() -> None:
    for text in ("NaN", '{"a": Infinity}', "[-Infinity]"):
        with pytest.raises(ConversionError):
            canon_jsonb(text)
    # what is not one JSON document fails as json.loads does (the fast scan included)
    for bad in ("{bad", "", " ", '{"a": 1} x', "1 2", "[1, 2]]", '{"a": 1}}', "[1,", "nul"):
        with pytest.raises(ValueError):
            json.loads(bad)
        with pytest.raises(ValueError):
            canon_jsonb(bad)
    # a string spelling the internal number marker is not taken for a number
    assert canon_jsonb('"\\u0000N1\\u0000"') == _jsonb_reference('"\\u0000N1\\u0000"')


def _json_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, meta JSON, note TEXT)")
    rng = random.Random(4)
    # (a bare number would be stored as a number: JSON has NUMERIC affinity)
    docs = [d for d in EDGE + _json_values(rng) if not isinstance(json.loads(d), int | float)]
    rows = [(i, doc, doc) for i, doc in enumerate(docs, 1)]
    rows.append((len(rows) + 1, None, None))
    conn.executemany("INSERT INTO m VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def copied_with_equal_checksums(src: Path, pg_url: str):  # type: ignore[no-untyped-def]
    """The plan of the one-table database at ``src``, its table created and copied to
    ``pg_url``, after checking that the source and target checksums agree."""
    plan = _plan(src)
    (tp,) = plan.tables
    assert srchash.eligible(tp)
    _create(pg_url, tp)
    copy_table(src, pg_url, tp, rejects=None)
    with sqlite3.connect(src) as conn:
        fast = srchash.fast_checksum(conn, tp)
    with pg(pg_url) as conn:
        assert target_checksum(conn, tp) == fast
    return plan


def content_ok(plan, url: str, src: Path) -> bool:  # type: ignore[no-untyped-def]
    """verify's verdict on the table's content (the bare table has no constraints or
    identity yet, which verify also reports)."""
    (check,) = verify(plan, url, {}, source=src, jobs=1).tables
    return check.ok and not check.changed


def test_json_checksums_agree_and_a_change_fails_verify(tmp_path: Path, pg_url: str) -> None:
    src = _json_db(tmp_path / "json.db")
    plan = copied_with_equal_checksums(src, pg_url)
    meta = next(c for c in plan.tables[0].columns if c.source == "meta")
    assert meta.pg_type == "jsonb"
    assert content_ok(plan, pg_url, src)
    # an equal jsonb value written differently is the same value; a changed one is not
    with pg(pg_url) as conn:
        conn.execute("""UPDATE m SET meta = '{"k": 2}' WHERE id = 2""")
    assert content_ok(plan, pg_url, src)
    for change in ("""'{"k": 2.0}'""", "'1.0'::jsonb || '[]'", """'{"k": 2, "l": null}'"""):
        with pg(pg_url) as conn:
            conn.execute(f"UPDATE m SET meta = {change} WHERE id = 2")
        result = verify(plan, pg_url, {}, source=src, jobs=1)
        assert "m: content checksum differs" in result.problems
        assert result.tables[0].changed and "id=2" in result.tables[0].changed[0]
    with pg(pg_url) as conn:
        conn.execute("""UPDATE m SET meta = '{"k": 2}', note = note || ' ' WHERE id = 2""")
    assert not content_ok(plan, pg_url, src)  # the text column compares raw text
    assert json.loads(EDGE[1]) == {"k": 2}
