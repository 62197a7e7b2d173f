"""``emrops sim``: the minimal EMRsim simulation server and its database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from emrops.cli.app import DbOpt, JsonOpt, context, err_console, make_app, print_json, settings
from emrops.db.engine import check_database, create_engine
from emrops.db.migrations_api import refuse_foreign, upgrade
from emrops.errors import UsageError
from emrops.logs import get_logger
from emrops.sim.catalog import ensure_scenarios

log = get_logger("cli.sim")
app = make_app("The EMRsim simulation server and its database (init-db, seed, serve, maintenance).")


@app.command("init-db")
def init_db(ctx: typer.Context, db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Create or upgrade the EMRsim schema to the newest revision (Alembic head).

    Example: emrops sim init-db --db sqlite:///var/emrsim.db
    """
    url = settings(ctx, db_url=db).db_url
    refuse_foreign(url)
    engine = create_engine(url)
    try:
        check_database(engine)
        before, after = upgrade(engine)
        added = ensure_scenarios(engine)
    finally:
        engine.dispose()
    result = {
        "db": url,
        "revision_before": before,
        "revision": after,
        "changed": before != after,
        "scenarios_added": added,
    }
    log.info(
        "schema %s revision %s (%s)",
        "upgraded to" if before != after else "already at",
        after,
        engine.url.render_as_string(),
        extra={"data": {"revision": after, "changed": before != after}},
    )
    if json_out:
        print_json(result)


def _base_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid --base-time {text!r}", hint="use UTC ISO-8601, e.g. 2026-01-01T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise UsageError(
            f"--base-time {text!r} has no time zone", hint="add Z for UTC: 2026-01-01T00:00:00Z"
        )
    return value.astimezone(UTC)


@app.command("seed")
def seed(
    ctx: typer.Context,
    sessions: Annotated[
        int,
        typer.Option("--sessions", min=1, max=100_000_000, help="Number of sessions to create."),
    ],
    messages_per_session: Annotated[
        int,
        typer.Option("--messages-per-session", min=0, max=100_000, help="Messages per session."),
    ] = 50,
    seed_value: Annotated[
        int, typer.Option("--seed", help="Random seed (same seed, same data).")
    ] = 1,
    base_time: Annotated[
        str | None,
        typer.Option(
            "--base-time",
            help="Sessions fall in the 90 days before this UTC time, e.g. 2026-01-01T00:00:00Z "
            "(default: now). With --seed, two runs give identical databases.",
        ),
    ] = None,
    append: Annotated[
        bool, typer.Option("--append", help="Add to a database that already has sessions.")
    ] = False,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fill the database with realistic generated data (initialises the schema if needed).

    A database that already holds sessions is refused (exit 2) unless --append is given.
    Example: emrops sim seed --sessions 20000 --messages-per-session 50 --seed 7
    --base-time 2026-01-01T00:00:00Z
    """
    from emrops.cli.render import Ticker
    from emrops.sim.seed import seed_database

    base = _base_time(base_time)
    url = settings(ctx, db_url=db).db_url
    refuse_foreign(url)
    engine = create_engine(url)
    try:
        check_database(engine)
        upgrade(engine)
        ensure_scenarios(engine, created_at=base if base_time is not None else None)
        with Ticker(err_console, interval_s=5.0, quiet=json_out) as ticker:

            def progress(done: int, total: int) -> None:
                ticker.update(
                    f"seeding: {done}/{total} sessions",
                    force=done in (0, total),
                    done=done,
                    total=total,
                )

            result = seed_database(
                engine,
                sessions=sessions,
                messages_per_session=messages_per_session,
                seed=seed_value,
                progress=progress,
                base_time=base,
                append=append,
            )
    finally:
        engine.dispose()
    if json_out:
        print_json(result)
    else:
        err_console.print(
            f"seeded {result.sessions} sessions, {result.messages} messages, "
            f"{result.vitals} vitals in {result.seconds:.1f}s"
        )


@app.command("serve")
def serve(
    ctx: typer.Context,
    db: DbOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default 8000).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (PostgreSQL only).")
    ] = 1,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve a non-loopback address without EMROPS_SIM_TOKEN (trusted nets).",
        ),
    ] = False,
) -> None:
    """Run the EMRsim simulation server (REST + WebSocket) until SIGTERM/SIGINT.

    SIGHUP re-reads the config and switches to a new database URL without restarting.
    A non-loopback --host needs EMROPS_SIM_TOKEN (exit 2 without it) unless --insecure.
    Example: emrops sim serve --db sqlite:///var/emrsim.db --port 8000
    """
    from emrops.sim.server import ServeOptions, run_server

    root = context(ctx)
    effective = settings(ctx, db_url=db, **{"sim.host": host, "sim.port": port})
    run_server(
        ServeOptions(
            db_url=effective.db_url,
            host=effective.get("sim.host"),
            port=effective.get("sim.port"),
            workers=workers,
            config_file=root.config_file,
            db_flag=db,
            log_format=effective.get("log_format"),
            insecure=insecure,
        )
    )


@app.command("maintenance")
def maintenance(
    ctx: typer.Context,
    state: Annotated[str, typer.Argument(help="on or off")],
    message: Annotated[
        str, typer.Option("--message", help="Message shown to clients while on.")
    ] = "",
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Switch maintenance mode on or off for every sim instance on this database.

    While on, writes get 503 with Retry-After and reads keep working.
    Example: emrops sim maintenance on --message "database migration until 22:00 UTC"
    """
    from emrops.db.control import set_maintenance
    from emrops.errors import UsageError

    if state not in ("on", "off"):
        raise UsageError(
            f"invalid state {state!r}", hint="use `emrops sim maintenance on` or `... off`"
        )
    engine = create_engine(settings(ctx, db_url=db).db_url, create=False)
    try:
        check_database(engine)
        result = set_maintenance(engine, state == "on", message)
    finally:
        engine.dispose()
    log.info(
        "maintenance %s%s", "on" if result.on else "off", f": {result.message}" if result.on else ""
    )
    if json_out:
        print_json(result)
