"""The migration journal: the ``emrops_migration`` table in the target.

One row per item: ``run`` (the plan, the snapshot, options), ``table:<name>`` (created/copied
with its row count and source checksum), ``object:<name>`` (keys, constraints, indexes,
identities; done or failed with the error), ``view:<name>``. Each table's copy commits together
with its journal row, so after a crash the journal says exactly what exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from emrops import secrets
from emrops.db import azure_auth, pghints
from emrops.db.urls import BULK_DEFAULTS, pg_options, simple_pg_uri
from emrops.errors import Busy, DatabaseError, UsageError

JOURNAL = "emrops_migration"

DDL = f"""
CREATE TABLE IF NOT EXISTS {JOURNAL} (
    item text PRIMARY KEY,
    kind text NOT NULL,
    state text NOT NULL,
    rows bigint,
    checksum numeric,
    rejected bigint NOT NULL DEFAULT 0,
    detail jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


def conninfo(url: str) -> str:
    """A libpq URI for a postgresql(+psycopg) URL."""
    simple = simple_pg_uri(url)
    if simple is not None:
        return simple
    from emrops.db.engine import parse_db_url

    db = parse_db_url(url)
    if db.engine_name != "postgresql":
        raise UsageError(
            f"--to must be a PostgreSQL URL, not {db.masked()}",
            hint="use postgresql+psycopg://user@host:5432/dbname",
        )
    return db.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _libpq(url: str) -> tuple[str, dict[str, Any]]:
    simple = simple_pg_uri(url)
    if simple is not None and azure_auth.is_loopback(urlsplit(simple).hostname):
        return simple, {}  # the fast path: no SQLAlchemy import
    conninfo(url)  # the UsageError for a URL that is not PostgreSQL
    from emrops.db.engine import parse_db_url

    return azure_auth.libpq(parse_db_url(url).url)


def require_utf8(conn: psycopg.Connection) -> None:
    """Refuse a target database whose encoding is not UTF8. SQLite text is Unicode; the copy
    sends it as UTF-8 bytes, which a LATIN1 database took as Latin-1 characters without a
    word ('héllo' arrived as 'hÃ©llo', six characters) and which verification could not see
    (the stored bytes were the source's, so their hashes matched); SQL_ASCII stores any
    bytes unchecked. Neither holds the source's text as text."""
    row = conn.execute("SELECT current_setting('server_encoding'), current_database()").fetchone()
    # (psycopg returns bytes for text from an SQL_ASCII database)
    encoding, database = (
        v.decode("ascii", "replace") if isinstance(v, bytes) else str(v) for v in row or ("", "")
    )
    if encoding != "UTF8":
        raise DatabaseError(
            f"target database {database} uses the encoding {encoding}: SQLite's text is Unicode "
            "and would be stored as other characters there (or, with SQL_ASCII, unchecked)",
            hint=f"create the target with UTF-8: createdb -E UTF8 -T template0 {database} "
            "(or CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)",
        )


START_LOCK = 0x656D726F70736D67  # "emropsmg": the advisory lock of a starting run


def lock_start(conn: psycopg.Connection) -> None:
    """Take the target's start lock on ``conn`` (held until it closes), or raise Busy. Two
    runs started together both found no journal, both tried to create it, and the second
    ended in "unexpected UniqueViolation" (after taking and pinning its backup); with the
    lock, the second one waits for nothing and says another run is starting, and once the
    first has journaled itself a later one is refused as a target holding a migration."""
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (START_LOCK,)).fetchone()
    if not (got and got[0]):
        raise Busy(
            "another emrops migrate-db run is starting on this target",
            hint="wait for it; `emrops migrate-db status --to ...` then shows it",
        )


def require_writable(conn: psycopg.Connection) -> None:
    """Refuse a target where nothing can be created: a standby (in recovery), or a database
    whose transactions are read-only by default. Without this, plan blamed a missing CREATE
    privilege and run ended in "unexpected ReadOnlySqlTransaction"."""
    row = conn.execute(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), current_database()"
    ).fetchone()
    recovery, read_only, database = row if row else (False, "off", "")
    if recovery:
        raise DatabaseError(
            f"target database {database} is on a standby (read-only, in recovery)",
            hint="point --to at the primary server",
        )
    if read_only == "on":
        raise DatabaseError(
            f"target database {database} is read-only (default_transaction_read_only is on)",
            hint=f"ALTER DATABASE {database} SET default_transaction_read_only = off (or for "
            "the role), or use another target",
        )


def is_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the connection to PostgreSQL was lost (class 08, 57P, or a
    driver error with no SQLSTATE); a server error of another kind (out of memory, disk
    full) is not."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    return not state or state.startswith(("08", "57P"))


def lost(exc: BaseException, doing: str) -> DatabaseError | None:
    """``exc`` as the error of a lost connection to PostgreSQL (the server restarted, the
    backend was terminated, the network went), or None for any other error. A migration that
    loses its connection stops, and ``--resume`` goes on from its journal: such an error
    ended runs and verifications in 'unexpected AdminShutdown' or 'OperationalError: the
    connection is closed'."""
    if not is_lost(exc):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DatabaseError(
        f"the connection to PostgreSQL was lost while {doing}: {first}",
        hint="once the server answers again, run the command again (a run: `emrops "
        "migrate-db run --resume`, which keeps what is done, or `emrops migrate-db rollback`)",
    )


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Connect to the target with UTC, ISO dates and no synchronous commit for bulk work.

    standard_conforming_strings is on whatever the database's own setting: with it off (a
    database set up for an old app), every backslash in a translated literal became an
    escape: a view's '\t' a tab, a CHECK's 'c:\temp' 'c:<tab>emp', with run and verify
    both content."""
    try:
        uri, extra = _libpq(url)
        conn = psycopg.connect(
            uri,
            **extra,
            autocommit=autocommit,
            connect_timeout=10,
            options=pg_options(
                given=str(conninfo_to_dict(uri).get("options") or ""),
                defaults=BULK_DEFAULTS,
                ours="-c TimeZone=UTC -c DateStyle=ISO -c synchronous_commit=off "
                "-c extra_float_digits=1 -c standard_conforming_strings=on",
            ),
        )
    except psycopg.ProgrammingError as exc:  # libpq could not parse it (e.g. %00 in a name)
        raise UsageError(
            f"invalid PostgreSQL URL {secrets.mask(url)}: {secrets.mask(str(exc).strip())}",
            hint="use postgresql+psycopg://user@host:5432/dbname (percent-encode reserved "
            "characters; NUL is not allowed)",
        ) from None
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = pghints.connect_hint(text, "--to")
        raise DatabaseError(
            f"cannot connect to {secrets.mask(url)}: {secrets.mask(text)}", hint=hint
        ) from None
    return conn


@dataclass
class Entry:
    item: str
    kind: str
    state: str
    rows: int | None
    checksum: int | None
    rejected: int
    detail: dict[str, Any]


_CREATE_HINT = (
    "migrate-db run needs CREATE on the target database's schema (e.g. `GRANT CREATE ON "
    "SCHEMA public TO <user>`) and on the database, or run it as the database's owner"
)
_NO_SCHEMA_HINT = (
    "the search_path of the target (database or role setting) names no schema that exists: "
    "create it, or set one (`ALTER ROLE <user> SET search_path = public`)"
)


def check_schema(conn: psycopg.Connection) -> None:
    """Refuse a target the run could not create its tables in: a search_path naming no
    schema that exists, or a schema without CREATE for this user (what plan checks before
    saying that run will work, and run before it starts)."""
    row = conn.execute(
        "SELECT current_schema(), current_setting('search_path'), "
        "coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)"
    ).fetchone()
    schema, path, create = row if row else (None, "", False)
    if schema is None:
        raise DatabaseError(
            f"the target has no schema to create the tables in (search_path = {path})",
            hint=_NO_SCHEMA_HINT,
        )
    if not create:
        raise DatabaseError(
            f"cannot create the migration's tables on the target: permission denied for "
            f"schema {schema}",
            hint=_CREATE_HINT,
        )


def ensure(conn: psycopg.Connection) -> None:
    try:
        conn.execute(DDL)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(
            f"cannot create the migration journal ({JOURNAL}) on the target: "
            f"{str(exc).strip().splitlines()[0]}",
            hint=_CREATE_HINT,
        ) from None
    except psycopg.errors.InvalidSchemaName as exc:
        raise DatabaseError(
            f"cannot create the migration journal ({JOURNAL}) on the target: "
            f"{str(exc).strip().splitlines()[0]}",
            hint=_NO_SCHEMA_HINT,
        ) from None


def exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (JOURNAL,)).fetchone()
    return bool(row and row[0])


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as text (JSON has no Infinity or NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), default=str, allow_nan=False)


def put(
    conn: psycopg.Connection,
    item: str,
    kind: str,
    state: str,
    *,
    rows: int | None = None,
    checksum: int | None = None,
    rejected: int = 0,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        f"INSERT INTO {JOURNAL} (item, kind, state, rows, checksum, rejected, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (item) DO UPDATE SET state = "
        "EXCLUDED.state, rows = EXCLUDED.rows, checksum = EXCLUDED.checksum, rejected = "
        "EXCLUDED.rejected, detail = coalesce(EXCLUDED.detail, "
        f"{JOURNAL}.detail), updated_at = now()",
        (
            item,
            kind,
            state,
            rows,
            checksum,
            rejected,
            Jsonb(detail, dumps=_dumps) if detail is not None else None,
        ),
    )


def set_detail(conn: psycopg.Connection, item: str, key: str, value: Any) -> None:
    """Set one key of an entry's detail."""
    conn.execute(
        f"UPDATE {JOURNAL} SET detail = jsonb_set(coalesce(detail, '{{}}'), %s, %s), "
        "updated_at = now() WHERE item = %s",
        ([key], Jsonb(value, dumps=_dumps), item),
    )


def set_checksum(conn: psycopg.Connection, item: str, checksum: int) -> None:
    """Record a table's source checksum (computed from the snapshot once the copy is done)."""
    conn.execute(
        f"UPDATE {JOURNAL} SET checksum = %s, updated_at = now() WHERE item = %s",
        (checksum, item),
    )


def read(conn: psycopg.Connection) -> dict[str, Entry]:
    if not exists(conn):
        return {}
    rows = conn.execute(
        f"SELECT item, kind, state, rows, checksum, rejected, detail FROM {JOURNAL} ORDER BY item"
    ).fetchall()
    return {
        r[0]: Entry(
            r[0], r[1], r[2], r[3], int(r[4]) if r[4] is not None else None, r[5], r[6] or {}
        )
        for r in rows
    }
