"""JSON canonicalised a batch at a time for verification (jsonbatch): the same texts as
canon_jsonb per document, no Python call per document on ordinary JSON, and verification as
strict as before: a changed JSON value in the target is found, an equal one written
differently is not reported."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate import srchash
from emrops.migrate.convert import ConversionError, canon_jsonb
from emrops.migrate.copy import copy_table
from emrops.migrate.jsonbatch import canon_batch
from emrops.migrate.verify import source_checksum as exact_checksum
from emrops.migrate.verify import target_checksum, verify
from tests.migrate.conftest import pg
from tests.migrate.test_canonical import _json_values
from tests.migrate.test_json_canonical import EDGE
from tests.migrate.test_sqlcopy import _create, _plan


def test_batch_texts_equal_canon_jsonb_per_document() -> None:
    docs = EDGE + _json_values(random.Random(23))
    want = [canon_jsonb(d) for d in docs]
    assert canon_batch(docs) == want
    rng = random.Random(5)
    for _ in range(50):  # batches with and without the numbers that take the slow form
        pick = rng.sample(range(len(docs)), rng.randint(1, 12))
        assert canon_batch([docs[i] for i in pick]) == [want[i] for i in pick]
    # strings spelling the number marker, documents that are not one value: per document
    tricky = ['"\\u0000N1\\u0000"', '{"a": "\\u0000N2.5\\u0000", "b": 2.5}']
    assert canon_batch(tricky) == [canon_jsonb(d) for d in tricky]
    with pytest.raises(ValueError):
        canon_batch(['"a', "1"])  # not JSON, as canon_jsonb raises
    with pytest.raises(ConversionError):
        canon_batch(["[1]", "NaN"])


def test_ordinary_json_takes_no_call_per_document() -> None:
    docs = [json.dumps({"n": i, "x": [1, 2.5, i / 7], "s": f"é{i}"}) for i in range(300)]
    before = canon_jsonb.cache_info()
    out = canon_batch(docs)
    after = canon_jsonb.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    assert out[1] == canon_jsonb(docs[1]) and '"x": [1, 2.5, 0.14285714285714285]' in out[1]


def test_documents_that_are_not_one_value_are_never_joined(tmp_path: Path) -> None:
    # joined, '"a', 'b"', '1, 2' would decode as 3 values (the count would match): SQLite's
    # json_valid sends such a batch to the exact path instead
    src = _db(tmp_path / "j.db")
    (tp,) = _plan(src).tables
    with sqlite3.connect(src) as conn:
        conn.execute("DELETE FROM m")
        conn.executemany(
            "INSERT INTO m VALUES (?, '[1]', ?, 'n', NULL)", [(1, '"a'), (2, 'b"'), (3, "1, 2")]
        )
        conn.commit()
        with pytest.raises(sqlite3.OperationalError, match="not JSON"):
            srchash.fast_checksum(conn, tp)
    assert srchash.source_checksum(src, tp) == exact_checksum(src, tp)
    assert srchash.source_checksum(src, tp)[0] == 0  # the copy rejects all three rows


def _db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, a JSON, b JSON NOT NULL, note TEXT, c JSON)"
    )
    docs = [d for d in EDGE + _json_values(random.Random(8)) if json.loads(d) != 0]
    docs = [d for d in docs if not isinstance(json.loads(d), int | float)]
    rows = [(i, d, docs[-i], f"n{i}", None if i % 3 else d) for i, d in enumerate(docs, 1)]
    rows.append((len(rows) + 1, None, '{"k": 1, "k": 2}', None, '{"k": 1, "k": 2}'))
    conn.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def _clean(plan, url: str, src: Path) -> bool:  # type: ignore[no-untyped-def]
    (check,) = verify(plan, url, {}, source=src, jobs=1).tables
    return check.ok and not check.changed


SAME = [  # (source document, the same jsonb value written otherwise)
    ('{"a": 1, "b": [true, null]}', '{ "b" : [ true , null ] ,\n "a":1 }'),
    ('{"k": 1, "k": 2}', '{"k": 2}'),
    ('{"e": "\\u00e9\\u2028"}', '{"e": "é\u2028"}'),
    ('{"n": 1e2, "z": -0.0}', '{"n": 100, "z": 0.0}'),
    ('{"n": 1.50}', '{"n": 1.50}'),
]
CHANGED = [  # (source document, a different jsonb value)
    ('{"a": 1, "b": 2}', '{"a": 1, "c": 2}'),  # a key
    ('{"a": 1, "b": 2}', '{"a": 1, "b": 3}'),  # a number
    ('{"n": 1.5}', '{"n": 1.50}'),  # a number's scale (jsonb::text keeps it)
    ('{"s": "x"}', '{"s": "y"}'),  # a string
    ('{"s": "x"}', '{"s": ["x"]}'),  # nesting
    ('{"k": 1, "k": 2}', '{"k": 1}'),  # the duplicate key that wins
    ('[1, {"a": {}}]', '[1, {"a": []}]'),
]


@pytest.mark.parametrize(
    ("source", "target", "same"), [(*p, True) for p in SAME] + [(*p, False) for p in CHANGED]
)
def test_verify_finds_changed_json_and_not_equal_json(
    tmp_path: Path, pg_url: str, source: str, target: str, same: bool
) -> None:
    src = _db(tmp_path / "j.db")
    with sqlite3.connect(src) as conn:
        conn.execute("UPDATE m SET a = ?, b = ?, c = ? WHERE id = 3", (source, source, source))
    plan = _plan(src)
    (tp,) = plan.tables
    assert srchash.eligible(tp)
    exprs, is_json = srchash.pieces_sql(sqlite3.connect(src), tp)
    assert is_json.count(True) == 3 and not any("emrops_canon_" in e for e in exprs)
    _create(pg_url, tp)
    copy_table(src, pg_url, tp, rejects=None)
    with sqlite3.connect(src) as conn:
        fast = srchash.fast_checksum(conn, tp)
    with pg(pg_url) as conn:
        assert target_checksum(conn, tp) == fast
    assert _clean(plan, pg_url, src)
    for column in ("a", "b", "c"):
        with pg(pg_url) as conn:
            conn.execute(f"UPDATE m SET {column} = %s WHERE id = 3", (target,))
        result = verify(plan, pg_url, {}, source=src, jobs=1)
        (check,) = result.tables
        if same:
            assert check.ok and not check.changed, column
        else:
            assert "m: content checksum differs" in result.problems, column
            assert check.changed and "id=3" in check.changed[0]
        with pg(pg_url) as conn:
            conn.execute(f"UPDATE m SET {column} = %s WHERE id = 3", (source,))
