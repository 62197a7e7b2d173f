"""Online mode: an app keeps writing during `run --online` and until `cutover`; nothing is lost.
Rollback of an online run leaves the source's content and schema as they were."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.migrate.conftest import pg


def content(path: Path) -> dict[str, str]:
    """Per-table checksum of every row (order-independent) and the schema objects."""
    conn = sqlite3.connect(path)
    out = {}
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in names:
        rows = sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{name}"'))
        out[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    out["schema"] = repr(
        conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    )
    conn.close()
    return out


class Writer(threading.Thread):
    """An app writing into the source until maintenance is switched on (it honours the flag)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.inserted = 0
        self.refused = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        session = conn.execute("SELECT id FROM sessions LIMIT 1").fetchone()[0]
        while not self.stop.is_set():
            flag = conn.execute(
                "SELECT value FROM emrops_control WHERE key = 'maintenance'"
            ).fetchone()
            if flag and json.loads(flag[0]).get("on"):
                self.refused += 1
                time.sleep(0.01)
                continue
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO messages (session_id, role, content, created_at, tokens) "
                "VALUES (?, 'student', ?, ?, 3)",
                (session, f"live {self.inserted}", now),
            )
            conn.execute(
                "UPDATE sessions SET score = ? WHERE id = ?", (self.inserted % 100, session)
            )
            if self.inserted % 7 == 3:
                conn.execute("DELETE FROM messages WHERE id = (SELECT min(id) FROM messages)")
            conn.execute("COMMIT")
            self.inserted += 1
            time.sleep(0.003)
        conn.close()


@pytest.fixture
def app_db(cli, tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    seeded = cli(
        "sim",
        "seed",
        "--db",
        f"sqlite:///{path}",
        "--sessions",
        "300",
        "--messages-per-session",
        "40",
        "--seed",
        "5",
    )
    assert seeded.exit_code == 0, seeded.stderr
    return path


def test_online_run_and_cutover_lose_no_write(
    cli, app_db: Path, pg_url: str, tmp_path: Path
) -> None:
    src = f"sqlite:///{app_db}"
    config = tmp_path / "emrops.toml"
    config.write_text(f'db_url = "{src}"\n\n[sim]\nport = 8000\n')
    writer = Writer(app_db)
    writer.start()
    try:
        time.sleep(0.2)
        result = cli(
            "--config",
            str(config),
            "migrate-db",
            "run",
            "--from",
            src,
            "--to",
            pg_url,
            "--online",
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["online"]["position"] > 0 and data["verify"] is None
        written_during_run = writer.inserted
        time.sleep(0.3)
        marker = tmp_path / "reloaded.txt"
        cut = cli(
            "--config",
            str(config),
            "migrate-db",
            "cutover",
            "--from",
            src,
            "--to",
            pg_url,
            "--reload-cmd",
            f"echo reloaded > {marker}",
            "--reload-shell",
            "--json",
        )
        assert cut.exit_code == 0, cut.stderr
    finally:
        writer.stop.set()
        writer.join(10)
    out = json.loads(cut.stdout)
    assert written_during_run > 0 and writer.inserted > written_during_run
    assert writer.refused > 0  # writes were held off during the window
    assert out["verify"]["problems"] == [] and out["downtime_ms"] >= 1000
    assert marker.read_text().strip() == "reloaded"
    text = config.read_text()
    assert text.startswith(f'db_url = "{pg_url}"') and "[sim]" in text
    with pg(pg_url) as conn:
        live = conn.execute("SELECT count(*) FROM messages WHERE content LIKE 'live %'").fetchone()
        flag = conn.execute(
            "SELECT value->>'on' FROM emrops_control WHERE key = 'maintenance'"
        ).fetchone()[0]
    source = sqlite3.connect(app_db)
    expected = source.execute(
        "SELECT count(*) FROM messages WHERE content LIKE 'live %'"
    ).fetchone()
    leftovers = source.execute(
        "SELECT name FROM sqlite_master WHERE name LIKE '\\_emrops%' ESCAPE '\\'"
    ).fetchall()
    source.close()
    assert live == expected and flag == "false"
    assert leftovers == []
    # the app now writes on PostgreSQL; going back must keep those writes
    with pg(pg_url) as conn:
        sid = conn.execute("SELECT session_id FROM messages LIMIT 1").fetchone()[0]
        new_id = conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at, tokens) VALUES "
            "(%s, 'student', 'written on pg', now(), 2) RETURNING id",
            (sid,),
        ).fetchone()[0]
        conn.execute("UPDATE sessions SET status = 'completed', score = 42.5 WHERE id = %s", (sid,))
        gone = conn.execute("SELECT min(id) FROM messages").fetchone()[0]
        conn.execute("DELETE FROM messages WHERE id = %s", (gone,))
    back = cli("--config", str(config), "migrate-db", "rollback", "--to", pg_url, "--yes", "--json")
    assert back.exit_code == 0, back.stderr
    source = sqlite3.connect(app_db)
    row = source.execute(
        "SELECT content, created_at FROM messages WHERE id = ?", (new_id,)
    ).fetchone()
    assert row[0] == "written on pg" and len(row[1]) == 26  # SQLAlchemy's naive UTC text
    assert source.execute(
        "SELECT status, score FROM sessions WHERE id = ?", (sid.hex,)
    ).fetchone() == ("completed", 42.5)
    assert source.execute("SELECT count(*) FROM messages WHERE id = ?", (gone,)).fetchone()[0] == 0
    flag = source.execute("SELECT value FROM emrops_control WHERE key = 'maintenance'").fetchone()
    source.close()
    assert json.loads(flag[0])["on"] is False
    assert config.read_text().startswith(f'db_url = "sqlite:///{app_db}"')
    with pg(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE nspname = 'public'"
            ).fetchone()[0]
            == 0
        )


def test_online_rollback_restores_the_source(cli, app_db: Path, pg_url: str) -> None:
    before = content(app_db)
    src = f"sqlite:///{app_db}"
    assert cli("migrate-db", "run", "--from", src, "--to", pg_url, "--online").exit_code == 0
    during = content(app_db)
    assert "_emrops_changes" in during and during["messages"] == before["messages"]
    rb = cli("migrate-db", "rollback", "--to", pg_url, "--yes", "--json")
    assert rb.exit_code == 0, rb.stderr
    assert "table _emrops_changes" in json.loads(rb.stdout)["removed_from_source"]
    assert content(app_db) == before  # every table's content and the schema as before
    with pg(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE nspname = 'public'"
            ).fetchone()[0]
            == 0
        )


class HttpWriter(threading.Thread):
    """A client of the real `sim serve` posting messages throughout; records what was accepted."""

    def __init__(self, base: str, session_id: str):
        super().__init__(daemon=True)
        self.base, self.session_id = base, session_id
        self.stop = threading.Event()
        self.accepted: list[tuple[int, str]] = []
        self.unavailable = 0
        self.errors: list[str] = []

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                text = f"http write {n}"
                try:
                    r = client.post(
                        f"/api/sessions/{self.session_id}/messages", json={"content": text}
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(str(exc))
                    time.sleep(0.05)
                    continue
                if r.status_code == 201:
                    self.accepted.append((r.json()["student"]["id"], text))
                elif r.status_code == 503:
                    self.unavailable += 1
                else:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                time.sleep(0.01)


def test_real_server_keeps_writing_through_online_run_and_cutover(
    cli, app_db: Path, pg_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port

    config = tmp_path / "emrops.toml"
    config.write_text(f'db_url = "sqlite:///{app_db}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emrops",
            "--config",
            str(config),
            "sim",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        session = httpx.post(base + "/api/sessions", json={"scenario_id": 1}, timeout=10).json()
        writer = HttpWriter(base, session["id"])
        writer.start()
        time.sleep(0.3)
        run = cli(
            "--config",
            str(config),
            "migrate-db",
            "run",
            "--from",
            f"sqlite:///{app_db}",
            "--to",
            pg_url,
            "--online",
        )
        assert run.exit_code == 0, run.stderr
        time.sleep(0.3)
        cut = cli(
            "--config",
            str(config),
            "migrate-db",
            "cutover",
            "--from",
            f"sqlite:///{app_db}",
            "--to",
            pg_url,
            "--reload-cmd",
            f"kill -HUP {server.pid}",
            "--json",
        )
        assert cut.exit_code == 0, cut.stderr
        before_switch = len(writer.accepted)
        deadline = time.monotonic() + 20  # writes resume, now on PostgreSQL
        while time.monotonic() < deadline and len(writer.accepted) < before_switch + 5:
            time.sleep(0.1)
        writer.stop.set()
        writer.join(15)
    finally:
        server.terminate()
        server.wait(15)
        log.close()
    assert not writer.errors, writer.errors[:3]
    assert writer.unavailable > 0  # writes got 503 during the window, and were retried
    assert len(writer.accepted) > before_switch + 4
    with pg(pg_url) as conn:  # every accepted write is in PostgreSQL, before and after cutover
        stored = dict(
            conn.execute(
                "SELECT id, content FROM messages WHERE session_id = %s AND role = 'student'",
                (session["id"],),
            ).fetchall()
        )
    assert all(stored.get(i) == text for i, text in writer.accepted)
    downtime = json.loads(cut.stdout)["downtime_ms"]
    assert 1000 <= downtime < 60_000
