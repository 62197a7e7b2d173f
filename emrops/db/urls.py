"""Reading plain database URLs without importing SQLAlchemy (start-up time of backup and
migration runs).

Only unambiguous forms with no percent-escapes are read here: ``sqlite[+pysqlite]:///PATH
[?query]``, and ``postgres[ql][+psycopg|+psycopg2]://[user[:password]@]host[:port]/dbname``
with no query; anything else goes through :func:`emrops.db.engine.parse_db_url`, which
agrees with this on every URL this accepts (tested).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

SIMPLE_SQLITE = re.compile(r"sqlite(?:\+pysqlite)?:///(?P<path>[^?%]+)(?:\?[^%]*)?")
SIMPLE_PG = re.compile(
    r"postgres(?:ql)?(?:\+psycopg2?)?://"
    r"(?P<netloc>(?:[A-Za-z0-9_.~-]+(?::[A-Za-z0-9_.~-]*)?@)?[A-Za-z0-9_.-]+(?::[0-9]{1,5})?)"
    r"/(?P<db>[A-Za-z0-9_.~-]+)"
)


def simple_sqlite_path(text: str) -> Path | None:
    """The file of a plain SQLite URL, or None when the URL needs the full parser."""
    whole = whole_name(text)
    if whole is not None:
        return whole
    match = SIMPLE_SQLITE.fullmatch(str(text).strip())
    if match is None or match["path"] == ":memory:":
        return None
    return Path(match["path"])


def simple_pg_uri(text: str) -> str | None:
    """The libpq URI (``postgresql://...``) of a plain PostgreSQL URL, or None when the URL
    needs the full parser."""
    match = SIMPLE_PG.fullmatch(str(text).strip())
    if match is None:
        return None
    return f"postgresql://{match['netloc']}/{match['db']}"


def sqlite_db_url(path: str | os.PathLike[str]) -> str:
    """The ``sqlite:///`` URL of the file at ``path``, percent-escaped so that any character the
    path holds (``?``, ``#``, ``%``, newlines, unicode) survives parsing by SQLAlchemy and by
    :func:`simple_sqlite_path` (which then defers to the full parser). Build SQLite URLs from
    paths only with this: ``f"sqlite:///{path}"`` cuts a path at its first ``?``."""
    return "sqlite:///" + quote(os.path.abspath(os.fspath(path)), safe="/")


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)``, False where the OS refuses the name itself: an escaped URL of a long
    file name (80 CJK characters are 243 bytes, 720 as %-escapes) is too long to be one."""
    try:
        return test(path)
    except OSError:  # ENAMETOOLONG (is_file() passes on ENOENT/ENOTDIR/ELOOP only)
        return False


def whole_name(text: str) -> Path | None:
    """The existing file a ``sqlite:///`` URL names when its ``?`` or ``%`` belongs to the
    file's name (``sqlite:////srv/a?b/app.db``, ``sqlite:////srv/pct%41.db``), which URL
    parsing would cut there as a query or decode as an escape (``pct%41.db`` is ``pctA.db``
    to SQLAlchemy: a backup of another file, without a word); None otherwise. When the name
    as written and the decoded one are both files, the URL is refused as ambiguous
    (UsageError). A name with ``#`` needs nothing: SQLite URLs keep it in the path."""
    head, sep, rest = str(text).strip().partition(":///")
    if not sep or not head.startswith("sqlite") or not ("?" in rest or "%" in rest):
        return None
    whole = Path(rest)
    if not _is(whole, Path.is_file):
        return None
    if "%" in rest:
        decoded = Path(unquote(rest.partition("?")[0]))
        if decoded != whole and _is(decoded, Path.exists):
            from emrops.errors import UsageError

            raise UsageError(
                f"{text!r} names two files: {decoded} (its %-escapes decoded, as URLs are "
                f"read) and {whole} (as written)",
                hint=f"write %25 for a literal % ({sqlite_db_url(whole)}), or give the "
                "decoded path",
            )
    return whole


# The app's timeouts (ALTER DATABASE/ROLE ... SET statement_timeout, a usual guard on managed
# servers) are not for bulk work, which pg_dump and pg_restore also run without them: a
# migration's COPY, a backup's row counts. One set in PGOPTIONS or the URL still applies.
BULK_DEFAULTS = "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0"


def pg_options(ours: str, given: str | None = None, defaults: str = "") -> str:
    """libpq ``options`` for emrops's own connections: ``defaults`` (emrops's, which a user
    may override), the user's PGOPTIONS, then the URL's own ``options`` (``?options=-c
    search_path=app``), then ``ours`` (later ``-c`` settings win). Passing ``options`` alone
    replaced both, so a search_path, statement_timeout or lock_timeout given there was
    silently ignored by emrops (a migration aimed at schema ``app`` landed in ``public``)
    while pg_dump and psql honoured it."""
    parts = (defaults, os.environ.get("PGOPTIONS", ""), given or "", ours)
    return " ".join(p.strip() for p in parts if p and p.strip())
