"""PostgreSQL snapshots: a REPEATABLE READ transaction exports its snapshot, row counts are
read in it and ``pg_dump -Fc --snapshot=...`` dumps exactly that snapshot; roles come from
``pg_dumpall --globals-only --no-role-passwords`` when the user may read them.

Kept apart from the SQLite snapshot so a SQLite backup never imports SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL

from emrops import secrets
from emrops.backup.snapshot import Snapshot
from emrops.db import azure_auth
from emrops.db.engine import DbUrl, create_engine, db_errors
from emrops.db.quoting import pg_text, quote_ident
from emrops.errors import DatabaseError, EmropsError
from emrops.logs import get_logger

log = get_logger(__name__)


def libpq_conninfo(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment carrying it (PGPASSWORD: the
    URL's password or, with ``?auth=azure``, an Entra ID token; TLS defaults as PGSSL*)."""
    uri, extra = azure_auth.libpq(url)
    return uri, azure_auth.tool_env(extra)


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise EmropsError(
            f"{name} is not installed",
            hint="install the PostgreSQL client (Debian: postgresql-client)",
        )
    return found


def pg_tables(conn: sa.Connection) -> list[tuple[str, str]]:
    rows = conn.exec_driver_sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY 1, 2"
    )
    return [(r[0], r[1]) for r in rows]


def _key_part(name: str) -> str:
    # Plain names stay as they are (readable, and what manifests before quoting hold); a name
    # with a dot or starting with a quote is written as a quoted identifier, so no two tables
    # share a key: public "a.b" is '"a.b"', table b of schema a is 'a.b'.
    if "." in name or name.startswith('"') or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


def count_key(schema: str, table: str) -> str:
    """The manifest's row-count key of a table: its name in schema public, else
    ``schema.table``, each part quoted (SQL style) when it holds a dot or starts with a quote."""
    if schema == "public":
        return _key_part(table)
    return f"{_key_part(schema)}.{_key_part(table)}"


def legacy_count_key(schema: str, table: str) -> str:
    """The key manifests written before :func:`count_key` used (ambiguous for dotted names)."""
    return table if schema == "public" else f"{schema}.{table}"


def pg_facts(
    conn: sa.Connection, legacy: dict[str, int] | None = None
) -> tuple[dict[str, int], str | None]:
    """Row count per table (keys: :func:`count_key`) and the Alembic revision. ``legacy``,
    when given, is filled with the same counts under the old keys (for old manifests)."""
    counts: dict[str, int] = {}
    revision = None
    for schema, table in pg_tables(conn):
        key = count_key(schema, table)
        counts[key] = int(
            conn.exec_driver_sql(
                pg_text(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
            ).scalar()
            or 0
        )
        if legacy is not None:
            legacy[legacy_count_key(schema, table)] = counts[key]
        if table == "alembic_version" and schema == "public":
            revision = conn.exec_driver_sql(
                "SELECT version_num FROM public.alembic_version"
            ).scalar()
    return counts, revision


LOCK_TIMEOUT = "30s"  # each lock's wait when the database sets no lock_timeout of its own


_ATTEMPTS = 2  # of a snapshot whose pg_dump waited out the lock timeout


@contextlib.contextmanager
def postgres_snapshot(db: DbUrl) -> Iterator[Snapshot]:
    """pg_dump of an exported snapshot, streamed; raises DatabaseError when pg_dump fails,
    when its output is not a whole custom-format archive (checked by ``pg_restore`` as it
    streams past), when it is older than the server, or when a table stays locked (ALTER
    TABLE, LOCK TABLE, VACUUM FULL...) longer than the lock timeout: the database's own
    ``lock_timeout``, else :data:`LOCK_TIMEOUT` (pg_dump itself would wait for ever).

    The row counts hold ACCESS SHARE on every table until pg_dump is done, and pg_dump takes
    it again in its own session: an ALTER TABLE queued in between (it waits for the counts'
    lock) makes pg_dump wait for it, a wait the server cannot see as a deadlock. pg_dump's
    wait is bounded by the lock timeout, and a pg_dump that timed out before writing anything
    is tried again once in a new snapshot, after the ALTER went through."""
    engine = create_engine(db, pool_size=1, max_overflow=0, bulk=True)
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            with db_errors(db), engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    timeout = str(conn.exec_driver_sql("SHOW lock_timeout").scalar())
                    if timeout in ("0", ""):
                        timeout = LOCK_TIMEOUT
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    snapshot_id = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                    counts, revision = _locked_facts(conn, db, timeout)
                    server = conn.exec_driver_sql("SHOW server_version").scalar()
                    num = int(conn.exec_driver_sql("SHOW server_version_num").scalar() or 0)
                    version = _check_tools(num // 10000)
                    info = {"server_version": server, "pg_dump_version": version}
                    with _dump(db, str(snapshot_id), timeout, last=attempt == _ATTEMPTS) as stream:
                        if stream is None:
                            continue  # a new snapshot, once this one's locks are gone
                        yield Snapshot(counts, revision, info, stream=stream)
                        return
    finally:
        engine.dispose()


@contextlib.contextmanager
def _dump(db: DbUrl, snapshot_id: str, timeout: str, *, last: bool) -> Iterator[IO[bytes] | None]:
    """pg_dump's archive of the snapshot, as a stream checked while read; None (when not the
    ``last`` attempt) for a pg_dump that waited out the lock timeout before writing anything."""
    conninfo, env = libpq_conninfo(db.url)
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as check_err:
        proc = subprocess.Popen(
            [
                pg_tool("pg_dump"),
                "-Fc",
                "-Z0",
                f"--snapshot={snapshot_id}",
                f"--lock-wait-timeout={timeout}",
                "-d",
                conninfo,
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert proc.stdout is not None
        checked: _CheckedArchive | None = None
        try:
            # pg_dump writes its archive's first bytes once it holds all its locks
            head = proc.stdout.read(5)
            if not head and not last and proc.wait() != 0 and _lock_waited(_text(errors)):
                log.warning(
                    "pg_dump of %s waited %s for a lock and gave up (a session altering a "
                    "table was queued between the backup's snapshot and pg_dump); trying "
                    "again in a new snapshot",
                    db.masked(),
                    timeout,
                )
                yield None
                return
            checked = _CheckedArchive(proc.stdout, check_err, head)
            yield cast(IO[bytes], checked)
        except BaseException:
            proc.kill()  # one waiting for a lock would not see its output closed
            if checked is not None:
                checked.abandon()
            raise
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            checked.abandon()
            text = _text(errors)
            killed = killed_by(code)
            said = f"killed by {killed}" if killed else tool_error(text)
            raise DatabaseError(
                f"pg_dump of {db.masked()} failed (exit {code}): {said}" + _locking(text),
                hint=_dump_hint(text, timeout),
            )
        checked.finish(db)


def _text(errors: IO[bytes]) -> str:
    errors.seek(0)
    return secrets.mask(errors.read().decode(errors="replace"))


def _lock_waited(text: str) -> bool:
    return "lock timeout" in text or "Query was: LOCK TABLE" in text


_LOCK_QUERY = re.compile(r"Query was: LOCK TABLE (\S+) IN ")


def _locking(text: str) -> str:
    """ " (waiting to lock TABLE)" when pg_dump's query that failed was its LOCK TABLE (its
    --lock-wait-timeout ends as a statement timeout)."""
    found = _LOCK_QUERY.search(text)
    return f" (waiting to lock {found.group(1)})" if found else ""


def _dump_hint(text: str, timeout: str) -> str | None:
    if "permission denied" in text or "row-level security" in text:
        return (
            "a permission error means the user needs SELECT on every table (and USAGE on "
            "their schemas), and BYPASSRLS or ownership where row-level security is forced: "
            "e.g. the database's owner"
        )
    if _lock_waited(text):
        return _LOCKED_HINT.format(timeout=timeout)
    return None


_LOCKED_HINT = (
    "another session holds a lock that conflicts with reading the table (ALTER TABLE, LOCK "
    "TABLE, VACUUM FULL, REINDEX...); the backup waited {timeout} (the database's "
    "lock_timeout, else 30s) and took nothing: run it again once that is done, or let it wait "
    "longer (ALTER DATABASE ... SET lock_timeout = '5min')"
)


def _locked_facts(
    conn: sa.Connection, db: DbUrl, timeout: str
) -> tuple[dict[str, int], str | None]:
    """:func:`pg_facts`, with a lock timeout named as such (and who holds the locks)."""
    try:
        return pg_facts(conn)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":
            raise
        holders = _lock_holders(db)
        raise DatabaseError(
            f"backup of {db.masked()} could not lock a table within {timeout}: "
            f"{str(exc.orig).splitlines()[0]}; sessions holding exclusive locks there: "
            + ("; ".join(holders) if holders else "none any more"),
            hint=_LOCKED_HINT.format(timeout=timeout),
        ) from exc


def _lock_holders(db: DbUrl) -> list[str]:
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT DISTINCT l.pid, a.usename, a.application_name, l.mode, "
                "l.relation::regclass::text FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.granted AND l.mode IN ('AccessExclusiveLock', 'ExclusiveLock') "
                "AND l.locktype = 'relation' AND a.datname = current_database() "
                "AND l.pid <> pg_backend_pid() ORDER BY 1"
            ).fetchall()
    finally:
        engine.dispose()
    return [
        f"pid {pid} ({user}, {app or 'no application name'}, {mode} on {rel})"
        for pid, user, app, mode, rel in rows
    ]


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def tool_major(name: str) -> tuple[int | None, str]:
    """The major version a PostgreSQL tool reports (None when it reports none) and its
    ``--version`` line."""
    proc = subprocess.run(
        [pg_tool(name), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    line = proc.stdout.strip()
    match = _VERSION.search(line)
    return (int(match.group(1)) if match else None), line


def _check_tools(server_major: int) -> str:
    """pg_dump's ``--version`` line, once it is known to dump this server into archives the
    pg_restore here reads (the one verify and restore use)."""
    dump_major, version = tool_major("pg_dump")
    restore_major, _ = tool_major("pg_restore")
    where = pg_tool("pg_dump")
    if dump_major is None:
        raise DatabaseError(
            f"{where} is not a pg_dump emrops can use: `pg_dump --version` said {version!r}",
            hint="install the PostgreSQL client (Debian: postgresql-client) and check which "
            "pg_dump comes first on PATH",
        )
    if dump_major < server_major:
        raise DatabaseError(
            f"pg_dump {dump_major} ({where}) is older than the server ({server_major}): it "
            "cannot dump it",
            hint=f"install the PostgreSQL {server_major} client (Debian: "
            f"postgresql-client-{server_major}) and put it first on PATH",
        )
    if restore_major is not None and restore_major < dump_major:
        raise DatabaseError(
            f"pg_dump {dump_major} ({where}) writes archives that pg_restore {restore_major} "
            f"({pg_tool('pg_restore')}) cannot read: backups taken here could not be verified "
            "or restored here",
            hint="install pg_dump and pg_restore of the same PostgreSQL version",
        )
    return version


class _CheckedArchive:
    """pg_dump's output as it is read, also fed to ``pg_restore -f /dev/null``, which reads
    the whole archive (table of contents and every data block): a pg_dump that exits 0 with
    garbage, nothing, or an archive cut short is caught before the backup is published."""

    def __init__(self, source: IO[bytes], errors: IO[bytes], head: bytes) -> None:
        self.source = source
        self.head = b""
        self.size = 0
        self.errors = errors
        self.pending = head  # read before, returned first
        self.checker: subprocess.Popen[bytes] | None = subprocess.Popen(
            [pg_tool("pg_restore"), "-f", os.devnull],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
        )

    def read(self, n: int = -1) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            data = self.source.read(n)
        if len(self.head) < 5:
            self.head += data[:5]
        self.size += len(data)
        checker = self.checker
        if data and checker is not None and checker.stdin is not None and not checker.stdin.closed:
            try:
                checker.stdin.write(data)
            except BrokenPipeError:  # it stopped reading: it failed, finish() says why
                checker.stdin.close()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def abandon(self) -> None:
        if self.checker is not None:
            self.checker.kill()
            self._wait()

    def _wait(self) -> int:
        assert self.checker is not None
        if self.checker.stdin is not None and not self.checker.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.checker.stdin.close()
        code = self.checker.wait()
        self.checker = None
        return code

    def finish(self, db: DbUrl) -> None:
        """Raise DatabaseError when what pg_dump wrote is not a whole archive."""
        code = self._wait()
        self.errors.seek(0)
        said = tool_error(secrets.mask(self.errors.read().decode(errors="replace")))
        where = pg_tool("pg_dump")
        if self.size == 0 or not self.head.startswith(b"PGDMP"):
            what = "nothing" if self.size == 0 else f"no archive (it began {self.head[:5]!r})"
            raise DatabaseError(
                f"pg_dump ({where}) of {db.masked()} exited 0 but wrote {what}: nothing was "
                "published",
                hint="check which pg_dump comes first on PATH (`pg_dump --version`); "
                "reinstall the PostgreSQL client",
            )
        if code != 0:
            raise DatabaseError(
                f"pg_dump ({where}) of {db.masked()} exited 0 but its archive is not whole "
                f"({self.size} bytes; pg_restore reading it said: {said}): nothing was published",
                hint="check which pg_dump comes first on PATH and its version (`pg_dump "
                "--version`), and the free space where it writes; run the backup again",
            )


def killed_by(code: int | None) -> str | None:
    """The name of the signal a subprocess's (negative) exit code says killed it."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def tool_error(text: str) -> str:
    """The line of a PostgreSQL tool's stderr that says what failed: its "error:" line (pg_dump
    follows it with "detail: Query was: ..."), else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "ERROR:" in line or "FATAL:" in line:
            return line
    return lines[-1] if lines else "no message"


def pg_globals(db: DbUrl) -> tuple[bytes | None, str]:
    """Roles and tablespaces (no passwords); (None, reason) when not permitted."""
    conninfo, env = libpq_conninfo(db.url)
    proc = subprocess.run(
        [pg_tool("pg_dumpall"), "--globals-only", "--no-role-passwords", "-d", conninfo],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = secrets.mask(proc.stderr.decode(errors="replace")).strip().splitlines()
        return None, lines[-1] if lines else f"pg_dumpall exit {proc.returncode}"
    return proc.stdout, "ok"
