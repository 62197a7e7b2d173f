"""Random defaults written the SQLite way (randomblob(), random(), the UUID-v4 idiom) become
PostgreSQL expressions that give each new row its own value of the same shape, with a note."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate.sql import defaults
from tests.migrate.conftest import pg

UUID4 = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))),2) || '-' || substr('89ab',abs(random()) % 4 + 1, 1) || "
    "substr(lower(hex(randomblob(2))),2) || '-' || lower(hex(randomblob(6))))"
)
SHAPES = [
    ("lower(hex(randomblob(16)))", "text", r"[0-9a-f]{32}"),
    ("(hex(randomblob(4)))", "text", r"[0-9A-F]{8}"),  # SQLite's hex() is upper-case
    ("upper(hex(randomblob(20)))", "text", r"[0-9A-F]{40}"),
    ("lower(hex(randomblob(40)))", "text", r"[0-9a-f]{80}"),
    (UUID4, "text", r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
    (UUID4, "uuid", r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
    ("randomblob(8)", "bytea", r"\\x[0-9a-f]{16}"),
    ("(random())", "bigint", r"-?\d+"),
]


@pytest.mark.parametrize(("expr", "pg_type", "shape"), SHAPES)
def test_random_defaults_give_new_rows_distinct_values_of_the_same_shape(
    pg_url: str, expr: str, pg_type: str, shape: str
) -> None:
    d = defaults.translate(expr, pg_type)
    assert d.ok and d.sql and d.note, expr
    with pg(pg_url) as conn:
        conn.execute(f"CREATE TABLE r (x {pg_type} DEFAULT {d.sql}, y int)")
        conn.execute("INSERT INTO r (y) SELECT g FROM generate_series(1, 200) g")
        values = [v for (v,) in conn.execute("SELECT x::text FROM r")]
    assert all(re.fullmatch(shape, v) for v in values), values[:3]
    assert len(set(values)) == len(values)
    # SQLite's own values have that shape too (the oracle of the translation)
    lite = sqlite3.connect(":memory:")
    own = lite.execute(f"SELECT ({expr})").fetchone()[0]
    own_text = "\\x" + own.hex() if isinstance(own, bytes) else str(own)
    assert re.fullmatch(shape, own_text), own_text


@pytest.mark.parametrize(
    "expr",
    [
        "(abs(random()) % 10)",  # random, but not an expression with an equivalent
        "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))))",  # not a UUID
        "upper(hex(randomblob(16))",  # unbalanced
        "(zeroblob(1000000000))",  # over the evaluation's length limit
        "hex(randomblob(0))",
    ],
)
def test_random_defaults_without_an_equivalent_are_anomalies(expr: str) -> None:
    d = defaults.translate(expr, "text")
    assert not d.ok and d.sql is None and "cast rule" in d.message


def test_a_uuid_default_table_migrates_and_new_rows_get_keys(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "ids.db"
    conn = sqlite3.connect(source)
    conn.execute(
        f"CREATE TABLE item (id TEXT PRIMARY KEY DEFAULT {UUID4}, "
        "token TEXT NOT NULL DEFAULT (lower(hex(randomblob(16)))), "
        "salt INTEGER DEFAULT (random()), name TEXT)"
    )
    conn.executemany("INSERT INTO item (name) VALUES (?)", [("a",), ("b",)])
    conn.commit()
    conn.close()
    url = f"sqlite:///{source}"
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "random default" in run.stdout + run.stderr
    with pg(pg_url) as pgc:
        new = pgc.execute(
            "INSERT INTO item (name) VALUES ('c') RETURNING id, token, salt"
        ).fetchone()
        assert new is not None and new[2] is not None
        assert re.fullmatch(r"[0-9a-f-]{36}", new[0]) and re.fullmatch(r"[0-9a-f]{32}", new[1])
        assert pgc.execute("SELECT count(*) FROM item").fetchone()[0] == 3
