"""``emrops doctor``: is this set-up ready? The first command a new user or a CI step runs.

Each check returns ok, a detail and (when it failed) a hint; a check that does not apply here
is ``skipped`` with the reason (an SQLite database has no pg_dump to match, no Azure store
means no Azure credential to resolve and no network call at all). Checks never raise: a
failure, expected or not, is a failed check.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops import secrets
from emrops.config import Settings
from emrops.errors import EmropsError
from emrops.logs import iso_utc

CHECKS = (
    "config",
    "schedules",
    "database",
    "schema",
    "backup_store",
    "pg_tools",
    "encryption",
    "azure_credentials",
    "clock_skew",
    "sim_ready",
)
FORMAT = "emrops-doctor/1"


@dataclass
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    hint: str | None = None
    skipped: bool = False


@dataclass
class DoctorReport:
    ok: bool
    checked_at: str
    host: str
    checks: list[DoctorCheck]
    format: str = FORMAT

    @property
    def failed(self) -> list[DoctorCheck]:
        return [c for c in self.checks if not c.ok]


@dataclass
class DoctorOptions:
    max_clock_skew_s: float = 5.0
    min_free_bytes: int = 100_000_000
    timeout_s: float = 5.0


@dataclass
class _Context:
    settings: Settings
    opts: DoctorOptions
    facts: dict[str, Any] = field(default_factory=dict)


class _Skip(Exception):
    """The check does not apply here; the message says why."""


class _Fail(Exception):
    def __init__(self, detail: str, hint: str):
        super().__init__(detail)
        self.detail, self.hint = detail, hint


def run_doctor(load: Callable[[], Settings], opts: DoctorOptions) -> DoctorReport:
    """Run every check; a config that cannot be loaded fails ``config`` and skips the rest."""
    now = datetime.now(UTC)
    checks: list[DoctorCheck] = []
    try:
        cfg = load()
    except EmropsError as exc:
        checks.append(DoctorCheck("config", False, exc.message, exc.hint or "fix the config"))
        checks += [
            DoctorCheck(name, True, "needs a valid configuration", skipped=True)
            for name in CHECKS[1:]
        ]
        return DoctorReport(False, iso_utc(now), socket.gethostname(), checks)
    where = str(cfg.config_file) if cfg.config_file else "no config file (defaults and env)"
    checks.append(DoctorCheck("config", True, f"valid: {where}"))
    ctx = _Context(cfg, opts)
    runners: dict[str, Callable[[_Context], str]] = {
        "schedules": _schedules,
        "database": _database,
        "schema": _schema,
        "backup_store": _backup_store,
        "pg_tools": _pg_tools,
        "encryption": _encryption,
        "azure_credentials": _azure_credentials,
        "clock_skew": _clock_skew,
        "sim_ready": _sim_ready,
    }
    try:
        for name, runner in runners.items():
            checks.append(_run_one(name, runner, ctx))
    finally:
        if "engine" in ctx.facts:
            ctx.facts["engine"].dispose()
    return DoctorReport(all(c.ok for c in checks), iso_utc(now), socket.gethostname(), checks)


def _run_one(name: str, runner: Callable[[_Context], str], ctx: _Context) -> DoctorCheck:
    try:
        return DoctorCheck(name, True, secrets.mask(runner(ctx)))
    except _Skip as exc:
        return DoctorCheck(name, True, str(exc), skipped=True)
    except _Fail as exc:
        return DoctorCheck(name, False, secrets.mask(exc.detail), exc.hint)
    except EmropsError as exc:
        return DoctorCheck(name, False, secrets.mask(exc.message), exc.hint or "see the message")
    except Exception as exc:  # a broken check is a failed check, not a crash
        detail = secrets.mask(f"{type(exc).__name__}: {exc}")
        return DoctorCheck(name, False, detail, "rerun with --debug and report it")


def _schedules(ctx: _Context) -> str:
    """Every job's schedule parses and fires (`0 0 31 2 *` loaded, then never ran a job)."""
    from emrops.schedule.jobs import schedules

    parsed = schedules(ctx.settings)  # UsageError naming the setting
    return ", ".join(f"{job} {s.expression if s else 'off'}" for job, s in parsed.items())


def _engine(ctx: _Context) -> Any:
    from emrops.db.engine import create_engine, parse_db_url

    if "engine" not in ctx.facts:
        ctx.facts["db"] = db = parse_db_url(ctx.settings.db_url)
        # the checks only read: an SQLite file is opened read-only (a read-write connection
        # would switch a rollback-journal database to WAL), waiting --timeout for a lock
        ctx.facts["engine"] = create_engine(
            db,
            pool_size=1,
            max_overflow=0,
            readonly=db.engine_name == "sqlite" and db.sqlite_path is not None,
            connect_timeout=math.ceil(ctx.opts.timeout_s),
            busy_timeout_s=ctx.opts.timeout_s,
        )
    return ctx.facts["engine"]


def _database(ctx: _Context) -> str:
    from emrops.db.engine import check_database, parse_db_url

    path = parse_db_url(ctx.settings.db_url).sqlite_path
    if path is not None and not Path(path).is_file():  # connecting would create it
        ctx.facts["db_down"] = True
        raise _Fail(f"database file {path} does not exist", "run `emrops sim init-db`")
    try:
        engine = _engine(ctx)
        check_database(engine)
    except EmropsError as exc:
        ctx.facts["db_down"] = True
        raise _Fail(exc.message, exc.hint or "check db_url and that the server runs") from None
    return f"{ctx.facts['db'].masked()} reachable ({engine.dialect.name})"


def _need_db(ctx: _Context) -> Any:
    if ctx.facts.get("db_down"):
        raise _Skip("the database is unreachable (see database)")
    return _engine(ctx)


def _schema(ctx: _Context) -> str:
    from emrops.db.migrations_api import current_revision, head_revision

    engine = _need_db(ctx)
    current, head = current_revision(engine), head_revision()
    if current is None:
        raise _Fail("the database has no emrops schema", "run `emrops sim init-db`")
    if current != head:
        raise _Fail(
            f"schema revision {current}, this emrops expects {head}",
            "run `emrops sim init-db` to upgrade (back up first: `emrops backup run`)",
        )
    return f"revision {current} (head)"


def _backup_store(ctx: _Context) -> str:
    from emrops.backup.stores import open_store

    spec = str(ctx.settings.get("backup.store"))
    store = open_store(spec, ctx.settings)
    root = getattr(store, "root", None)
    if root is not None and not Path(root).exists():
        # a check creates nothing (the folder would appear wherever doctor ran, ./backups by
        # default): the nearest existing parent is probed instead, where `backup run` makes it
        from emrops.atomic import require_writable_folder

        try:
            require_writable_folder(Path(root), "backup store", "")
        except EmropsError as exc:
            raise _Fail(exc.message, "create the folder, or point backup.store elsewhere") from None
        here = next(p for p in Path(root).parents if p.exists())
        free = shutil.disk_usage(here).free
        text = f"{store.url}: does not exist yet, `emrops backup run` creates it; {here} is "
        if free < ctx.opts.min_free_bytes:
            raise _Fail(
                f"{text}writable, but only {_size(free)} free (minimum "
                f"{_size(ctx.opts.min_free_bytes)})",
                "free disk space or point backup.store elsewhere",
            )
        return f"{text}writable, {_size(free)} free"
    probe = f".doctor-{uuid.uuid4().hex[:8]}"
    try:
        store.write_bytes(probe, b"emrops doctor write probe\n")
        if store.read_bytes(probe) != b"emrops doctor write probe\n":
            raise _Fail(f"{store.url}: a probe file read back differently", "check the storage")
    finally:
        with contextlib.suppress(EmropsError):
            store.delete(probe)
    if root is None:
        return f"{store.url}: writable (remote store, no local disk to measure)"
    folder = Path(root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < ctx.opts.min_free_bytes:
        raise _Fail(
            f"{store.url}: writable, but only {_size(free)} free "
            f"(minimum {_size(ctx.opts.min_free_bytes)})",
            "free disk space or point backup.store elsewhere",
        )
    return f"{store.url}: writable, {_size(free)} free"


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n} bytes"


def _server_major(ctx: _Context) -> int:
    import sqlalchemy as sa

    engine = _need_db(ctx)
    with engine.connect() as conn:
        num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return num // 10000


def _tool_major(name: str) -> tuple[str, int]:
    from emrops.backup.pgdump import pg_tool

    path = pg_tool(name)
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise _Fail(f"cannot read the version of {path}: {out.strip()!r}", "reinstall it")
    return path, int(match.group(1))


def _pg_tools(ctx: _Context) -> str:
    if not ctx.settings.db_url.startswith("postgresql"):
        raise _Skip("the database is SQLite (pg_dump/pg_restore are for PostgreSQL)")
    server = _server_major(ctx)
    parts = []
    for tool in ("pg_dump", "pg_restore"):
        path, major = _tool_major(tool)
        if major < server:
            raise _Fail(
                f"{tool} {major} ({path}) is older than the server ({server}): it refuses to dump",
                f"install the PostgreSQL {server} client (Debian: postgresql-client-{server})",
            )
        parts.append(f"{tool} {major}")
    return f"{', '.join(parts)} for server {server}"


def _encryption(ctx: _Context) -> str:
    from emrops.backup import crypto

    text = ctx.settings.get("backup.recipient")
    if not text:
        raise _Skip("no backup.recipient configured (backups are not encrypted)")
    recipients = crypto.parse_recipients(text)
    wanted = {str(r) for r in recipients}
    identity_text = os.environ.get(crypto.IDENTITY_ENV, "")
    keys = [
        ln.strip() for ln in identity_text.splitlines() if ln.strip().startswith("AGE-SECRET-KEY-")
    ]
    if not identity_text:
        return (
            f"{len(wanted)} recipient(s) valid; {crypto.IDENTITY_ENV} not set here "
            "(only verify and restore need it)"
        )
    if not keys:
        raise _Fail(
            f"{crypto.IDENTITY_ENV} holds no AGE-SECRET-KEY-1... line",
            "export the identity printed by `emrops backup keygen` (or its --out file's text)",
        )
    import pyrage

    public = set()
    for key in keys:
        try:
            public.add(str(pyrage.x25519.Identity.from_str(key).to_public()))
        except (pyrage.IdentityError, ValueError) as exc:
            raise _Fail(
                f"{crypto.IDENTITY_ENV} is not a valid age identity: {exc}", "regenerate it"
            ) from None
    if not public & wanted:
        raise _Fail(
            f"the identity in {crypto.IDENTITY_ENV} does not match any backup.recipient: "
            "backups encrypted now could not be verified or restored with it",
            "use the recipient printed with the identity by `emrops backup keygen`",
        )
    return f"{len(wanted)} recipient(s) valid; the identity matches one of them"


def _azure_configured(cfg: Settings) -> tuple[bool, bool]:
    store = str(cfg.get("backup.store")).startswith("azure://")
    provisioning = bool(cfg.get("azure.subscription_id"))
    return store, provisioning


def _azure_credentials(ctx: _Context) -> str:
    cfg = ctx.settings
    store, provisioning = _azure_configured(cfg)
    if not store and not provisioning:
        raise _Skip("no Azure store or subscription configured (no network call made)")
    found = []
    if store:
        conn = cfg.get("azure.storage_connection_string")
        if conn:
            from azure.storage.blob import BlobServiceClient

            try:
                BlobServiceClient.from_connection_string(conn)  # parses; no request
            except ValueError:
                raise _Fail(
                    "EMROPS_AZURE_STORAGE_CONNECTION_STRING cannot be parsed",
                    "copy it from the storage account's Access keys page",
                ) from None
            found.append("storage: connection string")
        elif cfg.get("azure.storage_account_url"):
            found.append(f"storage: {_default_credential(ctx)}")
        else:
            raise _Fail(
                f"backup.store is {cfg.get('backup.store')} but no Azure credentials are set",
                "set EMROPS_AZURE_STORAGE_CONNECTION_STRING or azure.storage_account_url",
            )
    if provisioning:
        if cfg.get("azure.access_token"):
            found.append("Resource Manager: EMROPS_AZURE_ACCESS_TOKEN")
        else:
            found.append(f"Resource Manager: {_default_credential(ctx)}")
    return "; ".join(found)


def _default_credential(ctx: _Context) -> str:
    if "credential" in ctx.facts:
        return str(ctx.facts["credential"])
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    try:
        token = DefaultAzureCredential(process_timeout=ctx.opts.timeout_s).get_token(
            "https://management.azure.com/.default"
        )
    except ClientAuthenticationError as exc:
        raise _Fail(
            f"DefaultAzureCredential found no usable credential: {str(exc).splitlines()[0]}",
            "run `az login`, or use a managed identity / workload identity",
        ) from None
    ctx.facts["credential"] = f"DefaultAzureCredential (token valid until {token.expires_on})"
    return str(ctx.facts["credential"])


def _clock_skew(ctx: _Context) -> str:
    import sqlalchemy as sa

    engine = _need_db(ctx)
    if engine.dialect.name != "postgresql":
        raise _Skip("SQLite runs on this host's clock")
    before = datetime.now(UTC)
    with engine.connect() as conn:
        server = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    after = datetime.now(UTC)
    local = before + (after - before) / 2
    skew = (server.astimezone(UTC) - local).total_seconds()
    text = f"database clock {skew:+.3f}s from this host's (limit ±{ctx.opts.max_clock_skew_s:g}s)"
    if abs(skew) > ctx.opts.max_clock_skew_s:
        raise _Fail(text, "sync both clocks with NTP (timedatectl / chrony): backup times, "
                    "retention and schedules compare them")  # fmt: skip
    return text


def _sim_ready(ctx: _Context) -> str:
    cfg = ctx.settings
    if cfg.sources.get("sim.url", "default") == "default":
        raise _Skip("no sim.url configured (set EMROPS_SIM_URL to check a running server)")
    import requests

    url = str(cfg.get("sim.url")).rstrip("/") + "/ready"
    token = cfg.get("sim.token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(
            url, timeout=ctx.opts.timeout_s, headers=headers, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise _Fail(
            f"{url} unreachable ({type(exc).__name__})", "start it: `emrops sim serve`"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if response.status_code != 200 or body.get("status") != "ready":
        raise _Fail(
            f"GET {url}: {response.status_code} {body.get('status') or ''}".strip(),
            "see `emrops health` and the server's log",
        )
    return f"GET {url}: ready, revision {body.get('schema_revision')}"
