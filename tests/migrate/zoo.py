"""A hostile SQLite database with every quirk migrate-db must survive."""

from __future__ import annotations

import sqlite3
from pathlib import Path

LONG_A = "a_very_long_column_name_that_goes_on_and_on_well_past_the_postgres_limit_alpha"
LONG_B = "a_very_long_column_name_that_goes_on_and_on_well_past_the_postgres_limit_beta"

SCHEMA = f"""
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name VARCHAR(40) NOT NULL CHECK (length(name) > 0),
    active BOOLEAN NOT NULL DEFAULT 1,
    score REAL,
    balance NUMERIC(10,2) DEFAULT 0,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated TEXT DEFAULT (datetime('now')),
    stamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    prefs JSON,
    avatar BLOB,
    manager_id INTEGER REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX users_active_email ON users (email) WHERE active = 1;
CREATE INDEX users_lower_email ON users (lower(email));
CREATE TABLE "order items" (
    "order" INTEGER NOT NULL,
    "select" INTEGER NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    note TEXT,
    PRIMARY KEY ("order", "select")
) WITHOUT ROWID;
CREATE TABLE shipments (
    id INTEGER PRIMARY KEY,
    order_no INTEGER NOT NULL,
    line_no INTEGER NOT NULL,
    sent_epoch INTEGER,
    FOREIGN KEY (order_no, line_no) REFERENCES "order items" ("order", "select") ON DELETE CASCADE
);
CREATE TABLE mixed (anything, label TEXT);
CREATE TABLE wide ({LONG_A} TEXT, {LONG_B} TEXT);
CREATE TABLE empty_auto (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
CREATE TABLE empty_plain (k TEXT PRIMARY KEY, v INTEGER);
CREATE VIEW active_users AS SELECT id, email, ifnull(score, 0) AS score FROM users WHERE active = 1;
"""


def build_zoo(path: Path, *, bad: bool = False) -> Path:
    """The zoo; ``bad`` adds values needing rules (NUL text, invalid UTF-8, text in INTEGER)."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    users = [
        (
            1,
            "ann@example.org",
            "Ann",
            1,
            70.123456789012,
            12.5,
            "2024-01-02 03:04:05",
            '{"b": 1, "a": [1, 2.50, "x"], "aa": null}',
            b"\x00\x01\xff",
            None,
        ),
        (
            2,
            "Bob@Example.org",
            "Bób ünïcode ✓",
            0,
            1e-300,
            3,
            "2024-02-03T04:05:06.123456Z",
            '{"k": "line\\nbreak \\"q\\""}',
            None,
            1,
        ),
        (3, "cy@example.org", "Cy", 1, None, None, "2024-03-04T05:06:07+02:00", None, b"", 1),
    ]
    conn.executemany(
        "INSERT INTO users (id, email, name, active, score, balance, created_at, prefs, avatar, "
        "manager_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
        users,
    )
    conn.execute("DELETE FROM users WHERE id = 3")  # sqlite_sequence stays at 3
    conn.execute(
        "INSERT INTO users (id, email, name, active, created_at) "
        "VALUES (3, 'cy@example.org', 'Cy', 1, '2024-03-04 05:06:07')"
    )
    conn.executemany(
        'INSERT INTO "order items" VALUES (?,?,?,?)',
        [(1, 1, 2, "tab\there"), (1, 2, 1, None), (2, 1, 5, "'quoted'")],
    )
    conn.executemany(
        "INSERT INTO shipments (order_no, line_no, sent_epoch) VALUES (?,?,?)",
        [(1, 1, 1700000000), (2, 1, None)],
    )
    conn.executemany(
        "INSERT INTO mixed VALUES (?, ?)", [(1, "int"), ("two", "text"), (3.5, "real")]
    )
    conn.execute("INSERT INTO wide VALUES ('a', 'b')")
    if bad:
        conn.execute("CREATE TABLE dirty (id INTEGER PRIMARY KEY, n INTEGER, t TEXT, u TEXT)")
        conn.execute("INSERT INTO dirty VALUES (1, 5, 'fine', 'ok')")
        conn.execute(
            "INSERT INTO dirty VALUES (2, 'not-a-number', 'nul' || char(0) || 'byte', "
            "CAST(x'ff fe 41' AS TEXT))".replace("ff fe 41", "fffe41")
        )
        conn.execute("INSERT INTO dirty VALUES (3, 7, 'also fine', 'ok')")
    conn.commit()
    conn.close()
    return path


CASTS = """
[mixed.anything]
type = "text"

[shipments.sent_epoch]
type = "timestamptz"
epoch = "s"
"""
