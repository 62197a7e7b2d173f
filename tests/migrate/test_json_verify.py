"""Verification of jsonb columns is exact: a changed JSON value in the target (a key, a number,
its scale, a string, nesting, the duplicate key that wins) is found in every column (nullable,
NOT NULL), and an equal value written differently (spacing, key order, duplicate keys, unicode
escapes, exponents, -0) is not reported."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate.verify import verify
from tests.migrate.conftest import pg
from tests.migrate.test_canonical import _json_values
from tests.migrate.test_json_canonical import EDGE, content_ok, copied_with_equal_checksums


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


SAME = [  # (source document, the same jsonb value written otherwise)
    ('{"a": 1, "b": [true, null]}', '{ "b" : [ true , null ] ,\n "a":1 }'),
    ('{ "bb":1,\n "a" : [ true,null ] }', '{"a": [true, null], "bb": 1}'),
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
    plan = copied_with_equal_checksums(src, pg_url)
    assert content_ok(plan, pg_url, src)
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
