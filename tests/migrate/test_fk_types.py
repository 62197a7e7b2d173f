"""A foreign key's column takes the type of the column it references when they would differ in
a way PostgreSQL refuses a key between (SQLite compares them with the parent's affinity and
collation), as long as every value converts; otherwise the plan names the key (exit 3)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import migrated_ok, pg


def _db(path: Path, *statements: str) -> str:
    conn = sqlite3.connect(path)
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def _types(plan: dict, table: str) -> dict[str, str]:
    (t,) = [t for t in plan["tables"] if t["source"] == table]
    return {c["source"]: c["pg_type"] for c in t["columns"]}


def _valid_fks(pg_url: str) -> set[str]:
    with pg(pg_url) as conn:
        return {
            name
            for (name,) in conn.execute(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' AND convalidated"
            )
        }


def test_text_keys_to_an_integer_key_become_bigint(cli, tmp_path: Path, pg_url: str) -> None:
    url = _db(
        tmp_path / "blog.db",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        # a TEXT column keeps 1 as '1'; SQLite matches it with the parent's INTEGER affinity
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id TEXT REFERENCES users (id))",
        # a chain: comments -> posts (a text key again)
        "CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id VARCHAR(10) REFERENCES posts (id))",
        "INSERT INTO users VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO posts VALUES (1, '1'), (2, 2), (3, NULL)",
        "INSERT INTO comments VALUES (1, '3'), (2, '1')",
    )
    plan = migrated_ok(cli, url, pg_url)
    assert _types(plan, "posts")["user_id"] == "bigint"
    assert _types(plan, "comments")["post_id"] == "bigint"
    assert any("posts.user_id: foreign key to users.id: text -> bigint" in n for n in plan["notes"])
    assert _valid_fks(pg_url) == {"posts_user_id_fkey", "comments_post_id_fkey"}
    with pg(pg_url) as conn:
        joined = conn.execute(
            "SELECT count(*) FROM posts JOIN users ON users.id = posts.user_id"
        ).fetchone()
    assert joined == (2,)


def test_keys_to_a_nocase_key_become_citext(cli, tmp_path: Path, pg_url: str) -> None:
    url = _db(
        tmp_path / "codes.db",
        "CREATE TABLE country (code TEXT PRIMARY KEY COLLATE NOCASE, name TEXT)",
        "CREATE TABLE city (id INTEGER PRIMARY KEY, country TEXT REFERENCES country (code))",
        "INSERT INTO country VALUES ('NL', 'Netherlands')",
        "INSERT INTO city VALUES (1, 'NL'), (2, 'nl')",  # 'nl' matches under NOCASE
    )
    plan = migrated_ok(cli, url, pg_url)
    assert _types(plan, "city")["country"] == "citext"
    assert _valid_fks(pg_url) == {"city_country_fkey"}


def test_an_integer_key_to_a_text_key_becomes_text(cli, tmp_path: Path, pg_url: str) -> None:
    url = _db(
        tmp_path / "sku.db",
        "CREATE TABLE item (sku TEXT PRIMARY KEY)",
        "CREATE TABLE line (id INTEGER PRIMARY KEY, sku INTEGER REFERENCES item (sku))",
        "INSERT INTO item VALUES ('100'), ('A-1')",
        "INSERT INTO line VALUES (1, 100)",
    )
    plan = migrated_ok(cli, url, pg_url)
    assert _types(plan, "line")["sku"] == "text"
    assert _valid_fks(pg_url) == {"line_sku_fkey"}


def test_values_that_do_not_convert_keep_the_type_and_the_plan_names_the_key(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = _db(
        tmp_path / "bad.db",
        "CREATE TABLE users (id INTEGER PRIMARY KEY)",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id TEXT REFERENCES users (id))",
        "INSERT INTO users VALUES (1)",
        "INSERT INTO posts VALUES (1, '1'), (2, 'guest')",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    out = json.loads(plan.stdout)
    assert _types(out, "posts")["user_id"] == "text"
    kinds = {(f["kind"], f["name"]) for f in out["schema_failures"]}
    assert ("fk", "posts_user_id_fkey") in kinds  # text = bigint: no key between them
    assert "unexpected" not in plan.stderr


def test_a_cast_rule_on_the_key_column_is_left_as_the_rule_says(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = _db(
        tmp_path / "ruled.db",
        "CREATE TABLE users (id INTEGER PRIMARY KEY)",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id TEXT REFERENCES users (id))",
        "INSERT INTO users VALUES (1)",
        "INSERT INTO posts VALUES (1, '1')",
    )
    casts = tmp_path / "casts.toml"
    casts.write_text('[posts.user_id]\ntype = "bytea"\n')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert _types(json.loads(plan.stdout), "posts")["user_id"] == "bytea"


def test_a_bigint_cast_rule_converts_integer_text(cli, tmp_path: Path, pg_url: str) -> None:
    url = _db(
        tmp_path / "digits.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT)",
        "INSERT INTO t VALUES (1, '42'), (2, '-7'), (3, '007'), (4, NULL)",
    )
    casts = tmp_path / "casts.toml"
    casts.write_text('[t.n]\ntype = "bigint"\n')
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as conn:
        values = [v for (v,) in conn.execute("SELECT n FROM t ORDER BY id")]
    assert values == [42, -7, 7, None]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)  # the run's plan
    assert verify.exit_code == 0, verify.stdout + verify.stderr
