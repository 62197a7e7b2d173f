"""PGOPTIONS reaches emrops's own PostgreSQL connections. They passed libpq ``options``
alone, which replaces PGOPTIONS, so a search_path, statement_timeout or lock_timeout a user
exported for every client was ignored by emrops (while pg_dump and psql honoured it). Now the
user's settings come first and emrops's own (UTC, ...) after them, so its own still win."""

from __future__ import annotations

import pytest

from emrops.db.engine import create_engine
from emrops.migrate import journal


def test_pgoptions_reach_both_kinds_of_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321 -c TimeZone=Asia/Tokyo")
    with journal.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
        ).fetchone()
    # before: ('0', 'UTC')
    assert row == ("4321ms", "UTC")
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
            ).one()
    finally:
        engine.dispose()
    assert tuple(got) == ("4321ms", "UTC")
