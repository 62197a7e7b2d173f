"""Python's canonical text of each value must equal PostgreSQL's, byte for byte (or verify
would report false differences)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from emrops.migrate.convert import (
    CONVERT,
    canon_function,
    make_row_hasher,
    pg_canon_sql,
    pg_hash_sql,
    pg_row_sql,
)
from tests.migrate.conftest import pg


def _json_values(rng: random.Random) -> list[str]:
    def value(depth: int):
        kind = rng.choice(
            ["int", "float", "str", "bool", "null", "list", "dict"]
            if depth < 3
            else ["int", "str", "float"]
        )
        if kind == "int":
            return rng.randint(-(10**12), 10**12)
        if kind == "float":
            return rng.choice([0.1, -2.5e-7, 1e16, 3.0, -0.0, 12345.678, 1e-300])
        if kind == "str":
            return "".join(
                rng.choice(["a", "é", "\n", '"', "\\", "\x01", "✓", "/", " ", "\x7f"])
                for _ in range(rng.randint(0, 6))
            )
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "list":
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {
            "".join(rng.choice("abcé") for _ in range(rng.randint(0, 4))): value(depth + 1)
            for _ in range(rng.randint(0, 4))
        }

    out = [json.dumps(value(0), ensure_ascii=rng.random() < 0.5) for _ in range(150)]
    return out + ['{"b": 1, "a": 2, "b": 3}', "1E2", "[1.50, -0, 2e-3]", '"x"', "{}", "[]"]


def test_canonical_text_matches_postgresql(pg_url: str) -> None:
    rng = random.Random(5)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    samples = {
        "text": ["", "plain", "ünï ✓", "tab\tnew\nline", "back\\slash", "\x01ctl"],
        "bigint": [0, -1, 2**63 - 1, -(2**63), 42],
        "double precision": [
            0.0,
            -0.0,
            70.123456789012,
            1e-300,
            1e300,
            0.1,
            3.0,
            -2.5e-7,
            *(rng.uniform(-1e6, 1e6) for _ in range(50)),
        ],
        "numeric": [0, 1, -3, 2.5, 0.1, "1e5", "12.340", 1e16],
        "numeric(10,2)": [0, 12.5, 3, "7.1", -0.005],
        "boolean": [0, 1],
        "bytea": [b"", b"\x00\x01\xff", bytes(range(256))],
        "timestamptz": [
            "2024-01-02 03:04:05",
            "2024-02-03T04:05:06.123456Z",
            "2024-03-04T05:06:07+02:00",
            "2024-03-04 05:06:07.5",
            "2026-08-03 00:05:02.472078",
            *(
                (base + timedelta(microseconds=rng.randint(0, 10**14))).strftime(
                    "%Y-%m-%d %H:%M:%S.%f"
                )
                for _ in range(30)
            ),
        ],
        "date": ["2024-02-29", "1999-12-31"],
        "uuid": ["0190a1b2c3d4e5f60718293a4b5c6d7e", "0190A1B2-C3D4-E5F6-0718-293A4B5C6D7E"],
        "jsonb": _json_values(rng),
    }
    converter = {
        "text": "text",
        "bigint": "bigint",
        "double precision": "double",
        "numeric": "numeric",
        "numeric(10,2)": "numeric",
        "boolean": "bool",
        "bytea": "bytea",
        "timestamptz": "ts",
        "date": "date",
        "jsonb": "jsonb",
        "uuid": "pass",
    }
    with pg(pg_url) as conn:
        for pg_type, values in samples.items():
            conn.execute("DROP TABLE IF EXISTS t")
            conn.execute(f"CREATE TABLE t (i int, v {pg_type})")
            converted = [CONVERT[converter[pg_type]](v) for v in values]
            with conn.cursor().copy("COPY t (i, v) FROM STDIN") as cp:
                for i, v in enumerate(converted):
                    cp.write_row((i, v))
            got = dict(conn.execute(f"SELECT i, {pg_canon_sql('v', pg_type)} FROM t").fetchall())
            canon = canon_function(pg_type)
            for i, v in enumerate(converted):
                assert canon(v) == got[i], (pg_type, values[i])
            # whole-row hashes agree too (NULL included)
            conn.execute("INSERT INTO t VALUES (-1, NULL)")
            hasher = make_row_hasher(["integer", pg_type], [True, False])
            rows = conn.execute(
                f"SELECT i, {pg_hash_sql(pg_row_sql([('i', 'integer'), ('v', pg_type)]))} FROM t"
            ).fetchall()
            by_i = dict(rows)
            assert hasher((-1, None)) == by_i[-1]
            for i, v in enumerate(converted):
                assert hasher((i, v)) == by_i[i], (pg_type, values[i])
