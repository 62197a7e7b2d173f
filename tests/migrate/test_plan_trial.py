"""`plan` tries every statement on the target, rolled back (#16 item 0d)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import pg


def _db(path: Path, script: str, *, ignore_checks: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if ignore_checks:
        conn.execute("PRAGMA ignore_check_constraints = 1")
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


QUIRKS = """
CREATE TABLE j (id INTEGER PRIMARY KEY, meta TEXT, CHECK (likelihood(meta = 'x', 0.5) OR 1));
INSERT INTO j (meta) VALUES ('{"a": 1}');
CREATE TABLE c (id INTEGER PRIMARY KEY, n INT CHECK (n > 0));
INSERT INTO c (n) VALUES (1), (-2), (-3);
CREATE INDEX c_expr ON c (soundex(n));
CREATE VIEW v AS SELECT id, zeroblob(n) AS x FROM c;
CREATE VIEW ok AS SELECT id, n FROM c;
"""


def _objects(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    ).fetchone()[0]


def test_plan_reports_each_statement_postgresql_refuses_and_leaves_nothing(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "q.db", QUIRKS, ignore_checks=True)
    with pg(pg_url) as conn:
        conn.execute("CREATE TABLE c (x int)")  # in the way: the trial must not mind it
        before = _objects(conn)
        schemas = conn.execute("SELECT count(*) FROM pg_namespace").fetchone()[0]
    result = cli("migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url, "--json")
    assert result.exit_code == 3, result.stderr
    out = json.loads(result.stdout)
    failures = {(f["kind"], f["name"]): f for f in out["schema_failures"]}
    assert set(failures) == {
        ("check", "j_check"),
        ("index", "c_expr"),
        ("view", "v"),
        ("check-data", "c_check"),
    }
    # SQLite functions PostgreSQL lacks, passed through by the translation
    assert failures[("check", "j_check")]["error"].startswith("function likelihood(")
    assert "LIKELIHOOD(" in failures[("check", "j_check")]["sql"].upper()
    assert failures[("view", "v")]["error"].startswith("function zeroblob(")
    assert "soundex" in failures[("index", "c_expr")]["error"]
    (data,) = [f for f in out["schema_failures"] if f["kind"] == "check-data"]
    assert data["table"] == "c" and data["error"].startswith("2 source row(s) violate CHECK")
    assert ("view", "ok") not in failures and out["statements_tried"] >= 8
    assert not out["ok"] and out["target_conflicts"] == ["c"]
    assert "statement(s) fail on the target" in result.stderr
    with pg(pg_url) as conn:  # rolled back: no scratch schema, nothing new
        assert _objects(conn) == before
        assert conn.execute("SELECT count(*) FROM pg_namespace").fetchone()[0] == schemas


def test_plan_exit_0_means_run_builds_everything(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(
        tmp_path / "fine.db",
        "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE CHECK (length(name) "
        "> 0), at DATETIME DEFAULT CURRENT_TIMESTAMP);"
        "CREATE TABLE ch (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));"
        "CREATE INDEX ch_p ON ch (p) WHERE p IS NOT NULL;"
        "CREATE VIEW names AS SELECT name FROM p;"
        "INSERT INTO p (name) VALUES ('a'); INSERT INTO ch (p) VALUES (1);",
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stderr
    assert json.loads(plan.stdout)["schema_failures"] == []
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["failed_objects"] == []


def test_plan_with_an_unreachable_target_exits_1_with_a_hint(cli, tmp_path: Path) -> None:
    source = _db(tmp_path / "s.db", "CREATE TABLE t (a);")
    result = cli(
        "migrate-db", "plan", "--from", f"sqlite:///{source}",
        "--to", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot connect to" in result.stderr and "Try:" in result.stderr
    assert "unexpected" not in result.stderr


def test_keys_apart_only_by_type_in_sqlite_are_a_plan_failure(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(
        tmp_path / "u.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k UNIQUE);"
        "INSERT INTO t (k) VALUES (1), ('1'), ('x');"
        "CREATE TABLE p (k PRIMARY KEY, v);"
        "INSERT INTO p VALUES (2, 'a'), ('2', 'b');",
    )
    casts = tmp_path / "casts.toml"
    casts.write_text('[t.k]\ntype = "text"\n[p.k]\ntype = "text"\n')
    result = cli(
        "migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url,
        "--cast", str(casts), "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    failures = {(f["kind"], f["table"]): f for f in json.loads(result.stdout)["schema_failures"]}
    assert set(failures) == {("unique-data", "t"), ("unique-data", "p")}
    assert failures[("unique-data", "t")]["error"].startswith("1 key value(s) that SQLite keeps")


def test_plan_without_create_privilege_says_which_privilege(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "s.db", "CREATE TABLE t (a TEXT);")
    role = f"emrops_ro_{tmp_path.name[-8:].replace('-', '_')}".lower()
    db = pg_url.rsplit("/", 1)[1]
    with pg(pg_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO "{role}"')
    try:
        url = pg_url.replace("postgres@", f"{role}@")
        result = cli("migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", url)
        assert result.exit_code == 1, result.stderr
        assert "plan cannot try the statements on the target: permission denied" in (result.stderr)
        assert "CREATE on the --to database" in result.stderr
    finally:
        with pg(pg_url) as conn:
            conn.execute(f'REVOKE ALL ON DATABASE "{db}" FROM "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


TRIGGERS = """
CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE log (id INTEGER PRIMARY KEY, pid INTEGER, note TEXT);
CREATE TRIGGER good AFTER INSERT ON p BEGIN
  INSERT INTO log (pid, note) VALUES (NEW.id, 'a;b');
  INSERT INTO log (pid, note) VALUES (NEW.id, 'c');
END;
CREATE TRIGGER odd AFTER DELETE ON p BEGIN SELECT 1 FROM log; END;
CREATE TRIGGER mine AFTER UPDATE ON p BEGIN SELECT 1; END;
INSERT INTO p (name) VALUES ('x');
"""


def test_plan_tries_trigger_functions_whole_and_reports_the_ones_run_would_fail(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "t.db", TRIGGERS)
    url = f"sqlite:///{source}"
    casts = tmp_path / "casts.toml"
    # a replacement PostgreSQL refuses (its table does not exist)
    casts.write_text(
        '[trigger.mine]\nsql = "CREATE TRIGGER mine AFTER UPDATE ON nowhere '
        'FOR EACH ROW EXECUTE FUNCTION nothing()"\n'
    )
    result = cli(
        "migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json"
    )
    assert result.exit_code == 3, result.stderr
    failures = {(f["kind"], f["name"]): f for f in json.loads(result.stdout)["schema_failures"]}
    # the function with ';' inside its $emrops$ body compiled (sent whole, not split)
    assert set(failures) == {("trigger", "odd"), ("trigger", "mine")}
    assert failures[("trigger", "odd")]["error"].startswith("not translated: statement")
    assert 'relation "nowhere" does not exist' in failures[("trigger", "mine")]["error"]
    assert "[trigger.<name>]" in failures[("trigger", "mine")]["hint"]
    # leaving both out makes plan exit 0, and run then builds everything it planned
    casts.write_text('[trigger.mine]\nsql = ""\n[trigger.odd]\nsql = ""\n')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert plan.exit_code == 0, plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        conn.execute("INSERT INTO p (name) VALUES ('y')")
        notes = [r[0] for r in conn.execute("SELECT note FROM log ORDER BY id")]
    assert notes == ["a;b", "c"] * 2  # the copied rows, then the translated trigger's
