#!/usr/bin/env python3
"""How many corpus views each SQL translator gets right: sqlglot (today) against the token
translator emrops had before (read from git at commit 00324a9, so the comparison can be rerun).

For every view of the corpus (tests/migrate/corpus/) and of the view quirks
(tests/migrate/test_views.py): the database is migrated once with today's code (views built
by it), then the token translator's SQL for the same view is tried in the same target.
"created" = PostgreSQL accepted the CREATE VIEW; "same rows" = SELECT * returns SQLite's rows
(normalised as in tests/migrate/corpus/compare.py). Prints the markdown table of
docs/migrate.md. Needs PostgreSQL (EMROPS_TEST_PG_DSN, default 127.0.0.1:5432 as postgres) and
the git history of this repository. Takes a few seconds.

Usage: python benchmarks/migrate_views.py
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from emrops.cli.main import app  # noqa: E402
from emrops.migrate.casts import load_casts  # noqa: E402
from emrops.migrate.planner import build_plan, open_source  # noqa: E402
from emrops.migrate.reflect import reflect  # noqa: E402
from tests.migrate.corpus.cases import CASES, Case  # noqa: E402
from tests.migrate.corpus.compare import rows  # noqa: E402
from tests.migrate.test_views import QUIRKS  # noqa: E402

ADMIN = os.environ.get(
    "EMROPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
TOKEN_COMMIT = "00324a9"


def token_translator(workdir: Path):
    """The token translator module as it was before sqlglot replaced it."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{TOKEN_COMMIT}:emrops/migrate/translate.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = workdir / "token_translate.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("token_translate", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(case: Case, workdir: Path, old) -> list[int]:
    """[views, token created, token same, sqlglot created, sqlglot same]"""
    db = case.build(workdir / f"{case.name.split()[0]}.db")
    casts = None
    if case.casts:
        casts = workdir / f"{case.name.split()[0]}.toml"
        casts.write_text(case.casts)
    name = f"emrops_views_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    host = psycopg.conninfo.conninfo_to_dict(ADMIN)
    user, server = host.get("user", "postgres"), host.get("host", "127.0.0.1")
    url = f"postgresql+psycopg://{user}@{server}:{host.get('port', 5432)}/{name}"
    counts = [0, 0, 0, 0, 0]
    try:
        args = ["migrate-db", "run", "--from", f"sqlite:///{db}", "--to", url, "--no-verify"]
        env = {f"XDG_{d}_HOME": str(workdir / d.lower()) for d in ("CONFIG", "STATE", "DATA")}
        CliRunner().invoke(app, args + (["--cast", str(casts)] if casts else []), env=env)
        plan = build_plan(open_source(db), load_casts(casts))
        columns = {c.source.lower(): c.target for t in plan.tables for c in t.columns}
        columns.update({t.source.lower(): t.target for t in plan.tables})
        bools = {c.target for t in plan.tables for c in t.columns if c.pg_type == "boolean"}
        src = sqlite3.connect(db)
        views = reflect(src).views
        dsn = psycopg.conninfo.make_conninfo(ADMIN, dbname=name)
        with psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC") as conn:
            for view, vp in zip(views, plan.views, strict=True):
                want = rows(src.execute(f'SELECT * FROM "{view.name}"').fetchall())
                counts[0] += 1
                try:
                    conn.execute(
                        "CREATE VIEW _token_view AS "
                        + old.translate_expr(view.select, columns, bools)
                    )
                    counts[1] += 1
                    counts[2] += rows(conn.execute("SELECT * FROM _token_view").fetchall()) == want
                    conn.execute("DROP VIEW _token_view")
                except psycopg.Error:
                    pass
                try:
                    got = rows(conn.execute(f'SELECT * FROM "{vp.target}"').fetchall())
                    counts[3] += 1
                    counts[4] += got == want
                except psycopg.Error:
                    pass
        src.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return counts


def main() -> None:
    cases = [*CASES, Case("view quirks", QUIRKS, [])]
    print(
        "| database | views | token: created | token: same rows "
        "| sqlglot: created | sqlglot: same rows |"
    )
    print("|---|---|---|---|---|---|")
    total = [0, 0, 0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # nothing of the runs lands in the caller's folders
        old = token_translator(Path(tmp))
        for case in cases:
            counts = measure(case, Path(tmp), old)
            if counts[0]:
                print(f"| {case.name} | " + " | ".join(map(str, counts)) + " |")
                total = [a + b for a, b in zip(total, counts, strict=True)]
    print("| **total** | " + " | ".join(f"**{n}**" for n in total) + " |")


if __name__ == "__main__":
    main()
