"""Names of foreign keys come from the CREATE TABLE text (SQLite's pragmas do not give them)."""

from __future__ import annotations

import sqlite3

from emrops.migrate.reflect import parse_fk_names, reflect


def test_fk_names_in_table_and_column_form() -> None:
    sql = (
        'CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER CONSTRAINT "fk one" '
        'REFERENCES parent (id) ON DELETE CASCADE, "Other Col" int constraint [x y] references '
        'p, z references q, CHECK (z IN (1, 2)), FOREIGN KEY (a, "B") REFERENCES r(x, y), '
        "constraint two foreign key (c, d) references r (x, y))"
    )
    assert parse_fk_names(sql) == {
        ("parent_id",): "fk one",
        ("other col",): "x y",
        ("c", "d"): "two",
    }


def test_reflect_attaches_names_to_the_pragma_foreign_keys() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE sessions (id CHAR(32) PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE messages (id INTEGER NOT NULL, session_id CHAR(32) NOT NULL, "
        "other CHAR(32) REFERENCES sessions (id), "
        "CONSTRAINT pk_messages PRIMARY KEY (id), "
        "CONSTRAINT fk_messages_session_id_sessions FOREIGN KEY(session_id) "
        "REFERENCES sessions (id) ON DELETE CASCADE)"
    )
    messages = next(t for t in reflect(conn).tables if t.name == "messages")
    by_column = {tuple(fk.columns): fk for fk in messages.foreign_keys}
    assert by_column[("session_id",)].name == "fk_messages_session_id_sessions"
    assert by_column[("session_id",)].on_delete == "CASCADE"
    assert by_column[("other",)].name is None  # unnamed: the plan names it table_col_fkey
