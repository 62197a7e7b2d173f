"""A long file name (80 CJK characters: 243 bytes, which Linux allows) in its %-escaped
URL form is 720 bytes: asking the OS whether that text names a file raised ENAMETOOLONG,
so `backup run --db sqlite:///...%E4%B8%AD...` ended in 'unexpected OSError'."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from emrops.db.engine import parse_db_url
from emrops.db.urls import sqlite_db_url, whole_name


def test_an_escaped_long_name_is_read_as_its_decoded_file(cli, tmp_path: Path) -> None:
    path = tmp_path / ("中" * 80 + ".db")
    assert len(path.name.encode()) == 243
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    url = sqlite_db_url(path)
    assert "%E4%B8%AD" in url
    assert whole_name(url) is None  # the escaped text names no file: not an error either
    assert parse_db_url(url).url.database == str(path)
    done = cli("backup", "run", "--db", url, "--store", str(tmp_path / "st"), "--json")
    assert done.exit_code == 0, done.stderr
