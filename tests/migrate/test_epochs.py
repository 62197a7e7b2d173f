"""Numbers in timestamp columns, in the units apps store them: Unix seconds (with fractions),
milliseconds and microseconds, Julian day numbers (SQLite's julianday()) and Core Data's
seconds since 2001. The plan names the choices; a cast rule epoch = ... converts, and
SQLite's own date functions are the oracle of each conversion."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emrops.migrate.convert import CONVERT, EPOCH_UNITS, ConversionError, epoch_number
from emrops.migrate.profile import ColumnProfile
from emrops.migrate.typemap import map_column
from tests.migrate.conftest import pg

# (unit, stored value, SQLite expression giving the same instant as text with milliseconds)
CASES = [
    ("s", 1700000000, "strftime('%Y-%m-%d %H:%M:%f', 1700000000, 'unixepoch')"),
    ("s", 1700000000.25, "strftime('%Y-%m-%d %H:%M:%f', 1700000000.25, 'unixepoch')"),
    ("ms", 1700000000123, "strftime('%Y-%m-%d %H:%M:%f', 1700000000.123, 'unixepoch')"),
    ("us", 1700000000123000, "strftime('%Y-%m-%d %H:%M:%f', 1700000000.123, 'unixepoch')"),
    ("julian", 2460000.5, "strftime('%Y-%m-%d %H:%M:%f', 2460000.5)"),
    ("julian", 2451545.25, "strftime('%Y-%m-%d %H:%M:%f', 2451545.25)"),
    ("2001", 725000000.125,
     "strftime('%Y-%m-%d %H:%M:%f', 725000000.125 + 978307200, 'unixepoch')"),
]  # fmt: skip


@pytest.mark.parametrize(("unit", "value", "oracle"), CASES)
def test_each_unit_agrees_with_sqlite(unit: str, value: float, oracle: str) -> None:
    got = CONVERT[f"ts_epoch_{unit}"](value)
    want = sqlite3.connect(":memory:").execute(f"SELECT {oracle}").fetchone()[0]
    assert got.strftime("%Y-%m-%d %H:%M:%S.%f")[:23] == want
    assert epoch_number(unit, got) == pytest.approx(value, abs=1e-6)  # written back (fallback)


def test_bad_values_are_conversion_errors() -> None:
    for bad in ("2024", True, None, float("inf"), 10**30):
        with pytest.raises(ConversionError):
            CONVERT["ts_epoch_s"](bad)


def test_the_plan_names_the_units_and_a_rule_without_type_is_a_timestamp() -> None:
    reals = ColumnProfile(n_real=3)
    m = map_column("TIMESTAMP", reals)
    assert [a.condition for a in m.anomalies] == ["real"]
    assert all(u in m.anomalies[0].message for u in ('"julian"', '"2001"', '"ms"'))
    ruled = map_column("TIMESTAMP", reals, rule={"epoch": "julian"})
    assert (ruled.pg_type, ruled.converter, ruled.anomalies) == (
        "timestamptz",
        "ts_epoch_julian",
        [],
    )
    with pytest.raises(ValueError, match="epoch is for"):
        map_column("TIMESTAMP", reals, rule={"type": "text", "epoch": "s"})
    with pytest.raises(ValueError, match="epoch must be one of"):
        map_column("TIMESTAMP", reals, rule={"epoch": "days"})
    assert set(EPOCH_UNITS) == {"s", "ms", "us", "julian", "2001"}


def test_core_data_and_julian_columns_migrate_and_verify(cli, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE ZNOTE (Z_PK INTEGER PRIMARY KEY, ZCREATED TIMESTAMP, jd REAL)")
    conn.executemany(
        "INSERT INTO ZNOTE VALUES (?, ?, ?)",
        [(1, 725000000.123, 2460000.5), (2, 725000100, 2451545.0), (3, None, None)],
    )
    conn.commit()
    conn.close()
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    (a,) = json.loads(plan.stdout)["anomalies"]
    assert (a["column"], a["condition"], a["count"]) == ("ZCREATED", "real", 2)
    casts = tmp_path / "casts.toml"
    casts.write_text('[ZNOTE.ZCREATED]\nepoch = "2001"\n[ZNOTE.jd]\nepoch = "julian"\n')
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as conn:
        rows = conn.execute('SELECT "ZCREATED", jd FROM "ZNOTE" ORDER BY "Z_PK"').fetchall()
    assert rows == [
        (datetime(2023, 12, 23, 4, 53, 20, 123000, tzinfo=UTC), datetime(2023, 2, 25, tzinfo=UTC)),
        (datetime(2023, 12, 23, 4, 55, tzinfo=UTC), datetime(2000, 1, 1, 12, tzinfo=UTC)),
        (None, None),
    ]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
