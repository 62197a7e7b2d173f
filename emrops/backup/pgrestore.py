"""Restoring a PostgreSQL backup in place, to the backup's state, in one transaction.

``pg_restore --clean`` drops and recreates only what the dump holds: a table created after the
backup (a later migration, say) stays in the restored database, and one whose foreign key
references a table of the backup makes the restore fail (the key cannot be dropped). So the
relations of the target that the dump does not hold (tables, views, materialized views,
foreign tables, sequences no column owns; not an extension's own) are dropped first, with
CASCADE, in the same transaction as the restore script: readers see the old database until
the commit, then the backup's, and a failure anywhere leaves the target as it was. The rows
of dropped relations are in the safety backup that restore takes first.

The script (``pg_restore -f -``) is fed to ``psql`` through this process, which ends the
transaction with COMMIT only when pg_restore exited 0: a script cut short by a failing
pg_restore is rolled back, never committed in part.

The script's own ``SET lock_timeout = 0`` would let a DROP wait for ever behind a session
that keeps a table open (idle in transaction), silently, with maintenance on. It is replaced
by the target's own ``lock_timeout`` (ALTER DATABASE/ROLE ... SET, or PGOPTIONS), or
:data:`LOCK_TIMEOUT` when that is unset: a restore that cannot get a lock in time rolls back
and names the sessions holding transactions open.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from emrops import secrets
from emrops.backup.pgdump import killed_by, libpq_conninfo, pg_tool, tool_error
from emrops.db.engine import db_errors, oneshot_engine, parse_db_url
from emrops.db.quoting import quote_ident
from emrops.errors import DatabaseError

LOCK_TIMEOUT = "30s"  # each lock's wait when the target sets no lock_timeout of its own
_SCRIPT_LOCK_TIMEOUT = re.compile(rb"^SET lock_timeout = 0;$", re.MULTILINE)

# relkind -> the word DROP takes and the one pg_restore -l lists it under
_KINDS = {
    "r": ("TABLE", "TABLE"),
    "p": ("TABLE", "TABLE"),
    "v": ("VIEW", "VIEW"),
    "m": ("MATERIALIZED VIEW", "MATERIALIZED VIEW"),
    "f": ("FOREIGN TABLE", "FOREIGN TABLE"),
    "S": ("SEQUENCE", "SEQUENCE"),
}
_EXTRA_SQL = """
SELECT c.relkind, n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
  -- a sequence owned by a column (serial, identity) goes with its table
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
ORDER BY 2, 3
"""


# Objects other than relations the target holds, as pg_restore -l names them (KIND schema
# name); those the dump does not hold are left in place and named in the result. Dropping
# them is not the restore's call: a function or type made after the backup may be used by
# code outside the database. Extension members come and go with their extension.
_LEFTOVER_SQL = """
SELECT 'SCHEMA', '-', n.nspname, 'schema ' || quote_ident(n.nspname)
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
  AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                  AND d.objid = n.oid AND d.deptype = 'e')
UNION ALL
SELECT 'EXTENSION', '-', e.extname, 'extension ' || quote_ident(e.extname)
FROM pg_extension e WHERE e.extname <> 'plpgsql'
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       n.nspname,
       p.proname || '(' || coalesce((SELECT string_agg(format_type(t, NULL), ', ' ORDER BY i)
                     FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, i)), '') || ')',
       lower(CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate '
                   ELSE 'function ' END) || p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname,
       CASE t.typtype WHEN 'd' THEN 'domain ' ELSE 'type ' END || t.oid::regtype::text
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
  AND (t.typtype IN ('e', 'd', 'r', 'm')
       OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY 4
"""
# pg_restore --clean unlinks and recreates each large object the dump holds; one made after
# the backup would stay, so every one is unlinked first, in the same transaction (those the
# dump holds come back with their contents; the others' are in the safety backup)
_UNLINK_LARGE_OBJECTS = (
    "SELECT count(pg_catalog.lo_unlink(oid)) FROM pg_catalog.pg_largeobject_metadata;\n"
)


def toc(archive: Path) -> list[str]:
    """The archive's table of contents (``pg_restore -l``), one entry per line. Raises
    DatabaseError when pg_restore cannot list it: every relation of the target would look
    created after the backup, and be dropped with CASCADE (with what depends on it)."""
    proc = subprocess.run(
        [pg_tool("pg_restore"), "-l", str(archive)], capture_output=True, check=False
    )
    entries = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln[:1].isdigit()]
    if proc.returncode != 0 or not entries:
        said = tool_error(secrets.mask(proc.stderr.decode(errors="replace")))
        raise DatabaseError(
            f"pg_restore -l ({pg_tool('pg_restore')}) could not list the backup's archive "
            f"(exit {proc.returncode}, {len(entries)} entries: {said}); nothing was changed",
            hint="check which pg_restore comes first on PATH and its version "
            "(`pg_restore --version`), then run the restore again",
        )
    return entries


def extra_relations(target_url: str, entries: list[str]) -> list[tuple[str, str, str]]:
    """(DROP word, schema, name) of each relation of the target the dump does not hold. An
    entry reads ``ID; OID OID <KIND> <schema> <name> <owner>``; names may hold spaces, so
    each relation is looked for as that text rather than parsed out of the line."""
    return _target_facts(target_url, entries).extra


@dataclass
class _Facts:
    extra: list[tuple[str, str, str]]  # relations the dump does not hold (dropped)
    leftover: list[str]  # other objects the dump does not hold (left in place)
    large_objects: int  # large objects in the target now
    large_objects_gone: int | None  # of those, the ones the dump does not hold (None: unknown)
    lock_timeout: str  # the restore transaction's (the target's own, else LOCK_TIMEOUT)


def _target_facts(target_url: str, entries: list[str]) -> _Facts:
    """What the target holds that the dump (its TOC ``entries``) does not, and the
    lock_timeout the restore's transaction gets."""
    listed = [" " + e.split(" ", 3)[3] + " " if e.count(" ") >= 3 else "" for e in entries]
    db = parse_db_url(target_url)
    engine = oneshot_engine(db.url)
    try:
        with db_errors(db), engine.connect() as conn:
            rows = conn.exec_driver_sql(_EXTRA_SQL).fetchall()
            others = conn.exec_driver_sql(_LEFTOVER_SQL).fetchall()
            blobs = [
                int(r[0]) for r in conn.exec_driver_sql("SELECT oid FROM pg_largeobject_metadata")
            ]
            timeout = str(conn.exec_driver_sql("SHOW lock_timeout").scalar())
    finally:
        engine.dispose()

    def held(kind: str, schema: str, name: str) -> bool:
        needle = f" {kind} {schema} {name} "
        return any(line.startswith(needle) for line in listed)

    extra = []
    for relkind, schema, name in rows:
        drop, kind = _KINDS[relkind]
        if not held(kind, schema, name):
            extra.append((drop, schema, name))
    leftover = [shown for kind, schema, name, shown in others if not held(kind, schema, name)]
    kept = _toc_large_objects(entries)
    gone = None if kept is None else len(set(blobs) - kept)
    return _Facts(
        extra, leftover, len(blobs), gone, LOCK_TIMEOUT if timeout in ("0", "") else timeout
    )


_TOC_BLOB = re.compile(r"^\d+; \d+ \d+ BLOB - (\d+) ")


def _toc_large_objects(entries: list[str]) -> set[int] | None:
    """The OIDs of the large objects the dump holds (``BLOB - <oid>`` entries); None when
    it lists them some other way (pg_dump 17 groups them)."""
    found: set[int] = set()
    for line in entries:
        if " BLOB " in line:
            match = _TOC_BLOB.match(line)
            if match is None:
                return None
            found.add(int(match.group(1)))
    return found


def _bounded_lock_waits(head: bytes, timeout: str) -> bytes:
    """The script's first chunk with its ``SET lock_timeout = 0`` bounded (once: the script
    sets it once, in its header)."""
    quoted = "'" + timeout.replace("'", "''") + "'"
    return _SCRIPT_LOCK_TIMEOUT.sub(f"SET lock_timeout = {quoted};".encode(), head, count=1)


# psql -v VERBOSITY=verbose writes "ERROR:  53100: could not extend file ..."
_RESOURCES = re.compile(r"(?:ERROR|FATAL):\s+(53[0-9A-Z]{3}):")
_SCRIPT_END = b"-- PostgreSQL database dump complete\n"  # the last line but one of a script
_CLIENT_ENCODING = re.compile(r"^SET client_encoding = '([A-Za-z0-9_]+)';$")


def archive_encoding(archive: Path) -> str | None:
    """The encoding of the database a custom-format archive was dumped from (its script sets
    it as the client encoding, in the first lines); None when it cannot be read."""
    with subprocess.Popen(
        [pg_tool("pg_restore"), "--schema-only", "-f", "-", str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        found = None
        for n, line in enumerate(proc.stdout):
            match = _CLIENT_ENCODING.match(line.strip())
            if match or n > 200:
                found = match.group(1) if match else None
                break
        proc.kill()
    return found


def open_transactions(target_url: str) -> list[str]:
    """The other sessions with a transaction open in the target database, as
    ``pid N (user, application, state since T)``: what a restore waiting for locks waits on."""
    db = parse_db_url(target_url)
    engine = oneshot_engine(db.url)
    try:
        with db_errors(db), engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT pid, usename, application_name, state, "
                "to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL ORDER BY xact_start"
            ).fetchall()
    finally:
        engine.dispose()
    return [
        f"pid {pid} ({user}, {app or 'no application name'}, {state} since {since})"
        for pid, user, app, state, since in rows
    ]


@dataclass
class Restored:
    """What :func:`restore_exact` did: pg_restore/psql's exit code and error text, the
    relations it dropped, the other objects made after the backup it left in place, and
    how many large objects the target had and how many of them the dump does not hold (None
    when its list could not be read): all are unlinked, the dump's come back."""

    code: int
    message: str
    dropped: list[str]
    leftover: list[str]
    large_objects: int
    large_objects_gone: int | None


def restore_exact(archive: Path, target_url: str, before_commit: str = "") -> Restored:
    """Restore ``archive`` into the target in one transaction (see the module docstring);
    ``before_commit`` is SQL run last in that transaction. Whatever stops it before the
    COMMIT (pg_restore or psql failing or killed, an exception, Ctrl-C in this process) ends
    with psql killed and its server session ended: the transaction rolls back and holds no
    lock once this returns or raises."""
    facts = _target_facts(target_url, toc(archive))
    extra, lock_timeout = facts.extra, facts.lock_timeout
    drops = "".join(
        f"DROP {drop} IF EXISTS {quote_ident(schema)}.{quote_ident(name)} CASCADE;\n"
        for drop, schema, name in extra
    )
    if facts.large_objects:
        drops += _UNLINK_LARGE_OBJECTS
    uri, env = libpq_conninfo(parse_db_url(target_url).url)
    app = f"emrops restore {os.getpid()}"
    done = f"emrops-restore-committed-{uuid.uuid4().hex}"
    with (
        tempfile.TemporaryFile() as dump_err,
        tempfile.TemporaryFile() as psql_err,
        tempfile.TemporaryFile() as psql_out,
    ):
        psql = subprocess.Popen(
            # VERBOSITY=verbose: errors carry their SQLSTATE (class 53: out of disk, memory...)
            [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"]
            + ["-d", uri],
            stdin=subprocess.PIPE,
            stdout=psql_out,
            stderr=psql_err,
            env={**env, "PGAPPNAME": app},
        )
        dump: subprocess.Popen[bytes] | None = None
        try:
            dump = subprocess.Popen(
                [
                    pg_tool("pg_restore"),
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--no-privileges",
                    "-f",
                    "-",
                    str(archive),
                ],
                stdout=subprocess.PIPE,
                stderr=dump_err,
            )
            head = b"BEGIN;\n" + f"SET LOCAL lock_timeout = '{lock_timeout}';\n".encode()
            # psql prints `done` only once its COMMIT succeeded: the proof the script ran
            tail = f"{before_commit}COMMIT;\n\\echo {done}\n"
            short = _feed(psql, dump, head + drops.encode(), tail, lock_timeout)
        except BaseException:
            _abandon(psql, dump, target_url, app)
            raise
        if short:
            # pg_restore failed part-way: ending psql's input would end a COPY it is in the
            # middle of as if complete (or feed a ROLLBACK to it as a row); ending psql ends
            # its session, which the server rolls back
            _abandon(psql, dump, target_url, app)
        code = psql.wait()
        if not short and code == 0 and not _said(psql_out, done):
            raise DatabaseError(
                f"psql ({pg_tool('psql')}) exited 0 but never confirmed the restore's COMMIT "
                "(the line it echoes after it): whether the restore committed is not known",
                hint="check which psql comes first on PATH (`psql --version`) and what the "
                "target holds; running the restore again is safe (it takes a safety backup)",
            )
        errors = []
        if short:
            errors.append(_tool_failure("pg_restore", dump.returncode, dump_err) or short)
            code = dump.returncode or 1
        elif code != 0:
            errors.append(_tool_failure("psql", code, psql_err))
    dropped = [f"{schema}.{name}" for _d, schema, name in extra]
    return Restored(
        code,
        "; ".join(e for e in errors if e),
        dropped,
        facts.leftover,
        facts.large_objects,
        facts.large_objects_gone,
    )


def _feed(
    psql: subprocess.Popen[bytes],
    dump: subprocess.Popen[bytes],
    head: bytes,
    tail: str,
    lock_timeout: str,
) -> str | None:
    """Stream pg_restore's script into psql between ``head`` and ``tail`` (its COMMIT).
    Returns why pg_restore's script is not whole (no COMMIT sent then): it exited non-zero,
    or exited 0 without the line that ends every script; None when the script went through.
    A psql that stopped at an error has rolled back: None then, its exit code says it
    failed."""
    assert psql.stdin is not None and dump.stdout is not None
    try:
        psql.stdin.write(head)
        last = _bounded_lock_waits(dump.stdout.read(1 << 16), lock_timeout)
        psql.stdin.write(last)
        while chunk := dump.stdout.read(1 << 20):
            psql.stdin.write(chunk)
            last = last[-512:] + chunk
        if dump.wait() != 0:
            return "failed"
        if _SCRIPT_END not in last[-512:]:  # (then a \unrestrict line, since 15.14)
            return "pg_restore exited 0 but its script stops short of its last line"
        psql.stdin.write(tail.encode())
        psql.stdin.close()
    except BrokenPipeError:  # psql stopped at an error: its transaction is rolled back
        dump.kill()
        dump.wait()
    finally:
        dump.stdout.close()
    return None


def _said(out: IO[bytes], line: str) -> bool:
    out.seek(0)
    return line.encode() in out.read().splitlines()


def _abandon(
    psql: subprocess.Popen[bytes],
    dump: subprocess.Popen[bytes] | None,
    target_url: str,
    app: str,
) -> None:
    """Kill psql (and pg_restore), then end the server session psql had (application name
    ``app``): a statement it was running goes on after psql dies, holding the locks the
    restore took, until the server next talks to the client."""
    for proc in (dump, psql):
        if proc is not None and proc.poll() is None:
            proc.kill()
    for proc in (dump, psql):
        if proc is not None:
            with contextlib.suppress(Exception):
                if proc.stdin:
                    proc.stdin.close()
            proc.wait()
    with contextlib.suppress(Exception):  # best effort: the server ends it on its own anyway
        db = parse_db_url(target_url)
        engine = oneshot_engine(db.url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %(app)s AND datname = current_database() "
                    "AND pid <> pg_backend_pid()",
                    {"app": app},
                )
                conn.commit()
        finally:
            engine.dispose()


def _tool_failure(tool: str, code: int | None, err: IO[bytes]) -> str:
    """What a failed pg_restore or psql said, or the signal that killed it."""
    err.seek(0)
    text = secrets.mask(err.read().decode(errors="replace"))
    killed = killed_by(code)
    if killed:
        said = f" ({tool_error(text)})" if text.strip() else ""
        return f"{tool} was killed by {killed}{said}"
    if not text.strip():
        return f"{tool} exited with {code}" if code else ""
    return tool_error(text) + _dependents(text)


def _dependents(text: str) -> str:
    """The objects psql's DETAIL names as depending on what a DROP of the script could not
    drop (one a line: the first after "DETAIL:", the others bare), as " (A; B)"."""
    if "because other objects depend on it" not in text:
        return ""
    found = []
    for line in text.splitlines():
        line = line.removeprefix("DETAIL:").strip()
        # "X depends on Y" a line, then "and 12 other objects (see server log ...)" past 100
        if " depends on " in line or (line.startswith("and ") and "other objects" in line):
            found.append(line)
    return f" ({'; '.join(found)})" if found else ""


_NOT_OWNER = re.compile(r"must be owner of (large object|[a-z ]+?) (\S+)")


def _owner_of(target_url: str, kind: str, name: str) -> str:
    """ " (owned by ROLE)" for a large object the restoring user may not unlink; "" else."""
    if kind != "large object" or not name.isdigit():
        return ""
    db = parse_db_url(target_url)
    engine = oneshot_engine(db.url)
    try:
        with db_errors(db), engine.connect() as conn:
            role = conn.exec_driver_sql(
                "SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata WHERE oid = %s",
                (int(name),),
            ).scalar()
    except DatabaseError:  # the restore's own failure is reported either way
        return ""
    finally:
        engine.dispose()
    return f" (owned by {role}, not by {db.url.username or 'the restoring user'})" if role else ""


def restore_failed(target_url: str, shown: str, code: int, message: str) -> DatabaseError:
    """The error of a restore that rolled back, with what to do about the usual causes."""
    text = f"pg_restore into {shown} failed (exit {code}), target unchanged: {message}"
    if "lock timeout" in message:
        holders = open_transactions(target_url)
        return DatabaseError(
            f"{text}; sessions with a transaction open there: "
            + ("; ".join(holders) if holders else "none any more"),
            hint="end them (stop the app, or SELECT pg_terminate_backend(PID)) and run the "
            "restore again; each lock is waited for up to the target's lock_timeout "
            f"({LOCK_TIMEOUT} when unset; e.g. PGOPTIONS='-c lock_timeout=5min')",
        )
    if "because other objects depend on it" in message:
        return DatabaseError(
            text,
            hint="objects created after the backup (functions, types, ...: the restore drops "
            "only the relations it does not hold) depend on what it restores: drop them "
            "(their definitions are in the safety backup) and run the restore again, or "
            "restore into a new database",
        )
    owner = _NOT_OWNER.search(message)
    if owner:
        return DatabaseError(
            text + _owner_of(target_url, owner.group(1), owner.group(2)),
            hint="the restore drops and recreates what the backup holds, which only its owner "
            "may do: run it as that owner, or make the restoring user a member of the owning "
            "role (GRANT owner TO user; on Azure Database for PostgreSQL, which has no "
            "superuser, as the server's admin user), then run the restore again",
        )
    resources = _RESOURCES.search(message)
    if resources and resources.group(1) == "53100":
        return DatabaseError(
            text,
            hint="PostgreSQL's disk is full (the restore was rolled back, the space it took is "
            "free again): make room on the server for the restored database (the backup's "
            "size, plus its indexes; where its tablespace lives), then run the restore again",
        )
    if resources:
        return DatabaseError(
            text,
            hint="PostgreSQL ran out of a resource (the restore was rolled back): fix it on "
            "the server (memory, connections, limits), then run the restore again",
        )
    return DatabaseError(text)
