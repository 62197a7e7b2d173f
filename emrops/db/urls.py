"""Reading a plain SQLite URL without importing SQLAlchemy (start-up time of backup runs).

Only the unambiguous form ``sqlite[+pysqlite]:///PATH[?query]`` with no percent-escapes is
read here; anything else goes through :func:`emrops.db.engine.parse_db_url`, which agrees
with this on every URL this accepts (tested).
"""

from __future__ import annotations

import re
from pathlib import Path

SIMPLE_SQLITE = re.compile(r"sqlite(?:\+pysqlite)?:///(?P<path>[^?%]+)(?:\?[^%]*)?")


def simple_sqlite_path(text: str) -> Path | None:
    """The file of a plain SQLite URL, or None when the URL needs the full parser."""
    match = SIMPLE_SQLITE.fullmatch(str(text).strip())
    if match is None or match["path"] == ":memory:":
        return None
    return Path(match["path"])
