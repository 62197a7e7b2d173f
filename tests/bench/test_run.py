"""`benchmark run` against real SQLite files and a real PostgreSQL server, with tiny durations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from emrops.bench.api import BenchOptions, run_benchmark
from emrops.bench.result import SCHEMA_ID, validate
from emrops.bench.workloads import OPS
from emrops.db.engine import create_engine
from emrops.db.migrations_api import upgrade
from emrops.sim.catalog import ensure_scenarios
from emrops.sim.seed import seed_database
from tests.bench.conftest import scratch_databases
from tests.conftest import PG_HOST

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--duration", "1s", "--warmup", "0.2s", "--repeat", "1", "--sessions", "20"]


def _pg_server_url() -> str:
    return f"postgresql+psycopg://postgres@{PG_HOST}/postgres"


def _assert_cells_sane(doc: dict, workload: str) -> None:
    for cell in doc["cells"]:
        assert len(cell["repeats"]) == doc["config"]["repeat"]
        for rep in cell["repeats"]:
            assert rep["count"] > 0 and rep["errors"] == 0, rep["error_samples"]
            assert set(rep["ops"]) <= set(OPS[workload])
            for op in rep["ops"].values():
                lat = op["latency"]
                assert op["count"] == lat["count"] > 0
                assert 0 < lat["min_us"] <= lat["p50_us"] <= lat["p95_us"] <= lat["p99_us"]
                assert lat["p99_us"] <= lat["max_us"]
        s = cell["summary"]
        assert s["ops_per_s"]["min"] <= s["ops_per_s"]["median"] <= s["ops_per_s"]["max"]
        assert s["latency"]["count"] == sum(r["count"] for r in cell["repeats"])


def test_sqlite_and_postgresql_end_to_end(cli, tmp_path: Path) -> None:
    before = scratch_databases()
    out, png = tmp_path / "res" / "bench.json", tmp_path / "bench.png"
    r = cli(
        "benchmark", "run",
        "--db", f"sqlite:///{tmp_path / 'work' / 'bench.db'}",
        "--db", _pg_server_url(),
        "--workload", "chat", "--clients", "1,2", *TINY,
        "--out", str(out), "--plot", str(png),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    doc = validate(json.loads(out.read_text()))
    assert doc["schema"] == SCHEMA_ID
    assert [(c["engine"], c["clients"]) for c in doc["cells"]] == [
        ("sqlite", 1), ("sqlite", 2), ("postgresql", 1), ("postgresql", 2),
    ]  # fmt: skip
    _assert_cells_sane(doc, "chat")
    for cell in doc["cells"]:  # chat = exchange + last 50, both timed
        assert set(cell["repeats"][0]["ops"]) == {"chat.exchange", "chat.last50"}
    lite, pg = doc["engines"]
    assert lite["settings"]["journal_mode"] == "wal"
    assert lite["settings"]["busy_timeout_ms"] > 0
    assert lite["durability"] == "recent" and pg["durability"] == "full"
    assert pg["settings"]["fsync"] == "on" and pg["version"]
    assert lite["seed"]["sessions"] == pg["seed"]["sessions"] == 20
    assert lite["seed"]["messages"] == pg["seed"]["messages"] == 1000  # identical data
    assert any("durability differs in strength" in w for w in doc["warnings"])
    # table on stdout, warning on stderr
    assert "ops/s" in r.stdout and "postgresql" in r.stdout
    assert "Warning: durability differs in strength" in r.stderr
    # the plot is a real PNG
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    # nothing left behind: no scratch file beside bench.db (which was never created either)
    assert list((tmp_path / "work").iterdir()) == []
    assert scratch_databases() == before
    # a real result compared with itself: every metric unchanged, exit 0
    same = cli("benchmark", "compare", str(out), str(out), "--json")
    assert same.exit_code == 0, same.stderr
    verdicts = {m["verdict"] for m in json.loads(same.stdout)["metrics"]}
    assert verdicts == {"unchanged"}


def test_json_prints_only_the_result(cli, tmp_path: Path) -> None:
    folder = tmp_path / "scratch"
    folder.mkdir()  # --db may name a folder: the scratch files go inside it
    r = cli(
        "benchmark", "run", "--db", f"sqlite:///{folder}", "--workload", "write",
        "--clients", "2", *TINY, "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert list(folder.iterdir()) == []
    doc = validate(json.loads(r.stdout))
    _assert_cells_sane(doc, "write")
    assert set(doc["cells"][0]["repeats"][0]["ops"]) == {"write.message", "write.vitals"}
    # not a terminal: one status line per phase, each cell numbered with an ETA
    cells = [line for line in r.stderr.splitlines() if line.startswith("cell ")]
    assert len(cells) == len(doc["cells"]) * doc["config"]["repeat"]
    assert cells[0].startswith(f"cell 1/{len(cells)}: repeat 1/") and "; ETA " in cells[0]


@pytest.mark.parametrize("workload", ["read", "mixed"])
def test_read_and_mixed_workloads_on_sqlite(tmp_path: Path, workload: str) -> None:
    seen: list[str] = []
    doc = run_benchmark(
        BenchOptions(
            dbs=[f"sqlite:///{tmp_path / 'b.db'}"],
            workload=workload,
            clients=[2],
            duration_s=1.0,
            warmup_s=0.1,
            repeat=2,
            sessions=20,
            messages_per_session=20,
        ),
        progress=seen.append,
    )
    validate(doc)
    _assert_cells_sane(doc, workload)
    ops = set(doc["cells"][0]["repeats"][0]["ops"])
    assert {"read.history", "read.vitals"} <= ops
    if workload == "mixed":
        ops |= set(doc["cells"][0]["repeats"][1]["ops"])
        assert ops & {"write.message", "write.vitals"}  # about 20 % writes
    assert seen[0].startswith("sqlite: seeding 20 sessions") and "repeat 2/2" in seen[-1]
    assert list(tmp_path.iterdir()) == []


def _seed_app_db(url: str) -> None:
    engine = create_engine(url)
    try:
        upgrade(engine)
        ensure_scenarios(engine)
        seed_database(engine, sessions=5, messages_per_session=4, seed=3)
    finally:
        engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()
                for t in ("sessions", "messages", "vitals", "audit_log")
            }
    finally:
        engine.dispose()


def test_existing_sqlite_database_is_never_touched(cli, tmp_path: Path) -> None:
    app_db = tmp_path / "emrsim.db"
    url = f"sqlite:///{app_db}"
    _seed_app_db(url)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    r = cli("benchmark", "run", "--db", url, "--workload", "write", "--clients", "1", *TINY)
    assert r.exit_code == 0, r.stderr
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == files  # same files, same bytes: no scratch file left, app db unchanged


def test_existing_postgresql_database_is_never_touched(cli, pg_url: str) -> None:
    _seed_app_db(pg_url)
    counts = _counts(pg_url)
    before = scratch_databases()
    # --db names the app database itself: it is only used to reach the server
    r = cli("benchmark", "run", "--db", pg_url, "--workload", "write", "--clients", "2", *TINY)
    assert r.exit_code == 0, r.stderr
    assert _counts(pg_url) == counts
    assert scratch_databases() == before


def test_scratch_removed_when_the_run_fails(tmp_path: Path) -> None:
    before = scratch_databases()
    opts = BenchOptions(
        dbs=[f"sqlite:///{tmp_path / 'b.db'}", _pg_server_url()],
        workload="chat",
        clients=[500],  # beyond max_connections: refused after seeding
        duration_s=1,
        warmup_s=0,
        repeat=1,
        sessions=5,
    )
    from emrops.errors import UsageError

    with pytest.raises(UsageError, match="500 clients need 501 connections"):
        run_benchmark(opts)
    assert scratch_databases() == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--workload", "bogus"], 2, "Error: unknown workload 'bogus'"),
        (["--clients", "0"], 2, "Error: invalid --clients '0': every client count must be at"),
        (["--clients", "1,x"], 2, "Error: invalid --clients '1,x': use comma-separated whole"),
        (["--duration", "soon"], 2, "Error: invalid --duration 'soon'"),
        (["--duration", "0s"], 2, "Error: --duration must be above zero"),
        (["--repeat", "0"], 2, "Error: --repeat must be at least 1"),
        (["--plot", "out.jpg"], 2, "Error: --plot out.jpg: the plot is a PNG file"),
        (["--sqlite-synchronous", "off"], 2, "Error: invalid --sqlite-synchronous 'off'"),
        (["--db", "mysql://x/y"], 2, "Error: unsupported database 'mysql'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    cli, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    base = ["--db", f"sqlite:///{tmp_path / 'w' / 'b.db'}"] if "--db" not in args else []
    r = cli("benchmark", "run", *base, *TINY, *args)
    assert r.exit_code == code, r.stderr
    assert r.stderr.splitlines()[0].startswith(message), r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "w").exists()


def test_unreachable_database_exits_1_with_hint(cli, tmp_path: Path) -> None:
    r = cli("benchmark", "run", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/postgres", *TINY)
    assert r.exit_code == 1
    first, hint = r.stderr.splitlines()[:2]
    assert first.startswith("Error: database error on postgresql+psycopg://postgres@127.0.0.1:1")
    assert hint == "Try: check that PostgreSQL is running and the host/port in the URL are right"


def test_sqlite_synchronous_full_gives_durability_parity(tmp_path: Path) -> None:
    doc = run_benchmark(
        BenchOptions(
            dbs=[f"sqlite:///{tmp_path / 'b.db'}", _pg_server_url()],
            workload="write",
            clients=[1],
            duration_s=0.5,
            warmup_s=0,
            repeat=1,
            sessions=10,
            sqlite_synchronous="full",
        )
    )
    lite, pg = doc["engines"]
    assert lite["settings"]["synchronous"] == "FULL" and lite["durability"] == "full"
    assert pg["durability"] == "full"
    assert not any("durability differs" in w for w in doc["warnings"])


def test_without_db_the_configured_database_names_where(cli, tmp_path: Path) -> None:
    app_db = tmp_path / "cfg" / "app.db"
    r = cli(
        "benchmark", "run", *TINY, "--workload", "read", "--clients", "1", "--json",
        env={"EMROPS_DB_URL": f"sqlite:///{app_db}"},
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["engines"][0]["db"] == f"sqlite:///{app_db}"
    assert list(app_db.parent.iterdir()) == []  # scratch files gone, app.db never created
