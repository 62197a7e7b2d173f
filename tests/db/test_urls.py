"""The SQLAlchemy-free SQLite URL reader agrees with the full parser wherever it answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrops.db.engine import parse_db_url
from emrops.db.urls import simple_pg_uri, simple_sqlite_path

URLS = [
    "sqlite:///app.db",
    "sqlite:////var/lib/emrsim/app.db",
    "sqlite+pysqlite:///data/app.db",
    "sqlite:///app.db?timeout=5",
    "  sqlite:///with spaces/app.db  ",
    "sqlite:///./rel/../app.db",
]


@pytest.mark.parametrize("url", URLS)
def test_simple_urls_match_the_full_parser(url: str) -> None:
    assert simple_sqlite_path(url) == parse_db_url(url).sqlite_path


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///caf%C3%A9.db",  # escapes: left to the full parser
        "postgresql+psycopg://postgres@127.0.0.1/emrsim",
        "sqlite://host/app.db",
        "mysql:///app.db",
    ],
)
def test_anything_else_goes_to_the_full_parser(url: str) -> None:
    assert simple_sqlite_path(url) is None


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="?%\x00", blacklist_categories=("Cs",)),
        min_size=1,
    )
)
def test_any_plain_path_agrees(path: str) -> None:
    url = f"sqlite:///{path}"
    mine = simple_sqlite_path(url)
    if mine is None:
        return
    try:
        theirs = parse_db_url(url).sqlite_path
    except Exception:  # noqa: BLE001 - the full parser refusing is a disagreement too
        theirs = None
    assert mine == theirs
    assert isinstance(mine, Path)


def _full_uri(url: str) -> str:
    """What the migration connected with before: the full parser's rendering."""
    db = parse_db_url(url)
    return db.url.set(drivername="postgresql").render_as_string(hide_password=False)


PG_URLS = [
    "postgresql+psycopg://postgres@127.0.0.1:5432/emrsim",
    "postgresql://app:s3cret@db.example.org/emrsim",
    "postgres://app@localhost/emr_sim-2",
    "postgresql+psycopg2://u:@host:6543/db.name",
    "postgresql+psycopg://db-host/emrsim",
]


@pytest.mark.parametrize("url", PG_URLS)
def test_simple_pg_urls_match_the_full_parser(url: str) -> None:
    assert simple_pg_uri(url) == _full_uri(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u:p%40ss@host/db",  # escapes: left to the full parser
        "postgresql+psycopg://host/db?sslmode=require",
        "postgresql+psycopg://host",  # no database
        "postgresql+asyncpg://host/db",
        "postgresql+psycopg://[::1]:5432/db",
        "sqlite:///app.db",
    ],
)
def test_other_pg_urls_go_to_the_full_parser(url: str) -> None:
    assert simple_pg_uri(url) is None


WORD = st.text(alphabet="abcXYZ019_.~-", min_size=1, max_size=12)


@given(
    user=st.none() | WORD,
    password=st.none() | st.text(alphabet="abcXYZ019_.~-", max_size=8),
    host=st.text(alphabet="abcxyz019.-", min_size=1, max_size=12),
    port=st.none() | st.integers(min_value=1, max_value=65535),
    db=WORD,
)
def test_any_plain_pg_url_agrees(
    user: str | None, password: str | None, host: str, port: int | None, db: str
) -> None:
    auth = "" if user is None else user + ("" if password is None else f":{password}") + "@"
    url = f"postgresql+psycopg://{auth}{host}{'' if port is None else f':{port}'}/{db}"
    mine = simple_pg_uri(url)
    if mine is None:
        return
    try:
        theirs = _full_uri(url)
    except Exception:  # noqa: BLE001 - the full parser refusing is a disagreement too
        theirs = None
    assert mine == theirs


def test_a_question_mark_that_belongs_to_an_existing_file_name_is_read_as_part_of_it(
    tmp_path: Path,
) -> None:
    """'?' starts a URL's query: sqlite:///dir/a?b.db would name dir/a. When dir/a?b.db exists,
    every command reads that file, as it already did for '#' (SQLite URLs keep it)."""
    from emrops.db.urls import sqlite_db_url

    whole = tmp_path / "a?b#c.db"
    whole.write_bytes(b"")
    assert simple_sqlite_path(f"sqlite:///{whole}") == whole
    assert parse_db_url(f"sqlite:///{whole}").sqlite_path == whole
    assert parse_db_url(sqlite_db_url(whole)).sqlite_path == whole
    # a query on a file that exists as written is still a query
    plain = tmp_path / "plain.db"
    plain.write_bytes(b"")
    assert simple_sqlite_path(f"sqlite:///{plain}?mode=ro") == plain
    assert parse_db_url(f"sqlite:///{plain}?mode=ro").sqlite_path == plain


def test_a_percent_that_belongs_to_an_existing_file_name(cli, tmp_path: Path) -> None:
    """'%41' in a URL is 'A': sqlite:///dir/pct%41.db named dir/pctA.db, so `backup run` backed
    up another file than the one written, without a word. Now a file that exists as written is
    read as written, and when both exist the URL is refused as ambiguous."""
    import json
    import sqlite3

    from emrops.errors import UsageError

    literal, decoded = tmp_path / "pct%41.db", tmp_path / "pctA.db"
    for path, table in ((literal, "wanted"), (decoded, "decoy")):
        with sqlite3.connect(path) as conn:
            conn.execute(f"CREATE TABLE {table} (x)")
        conn.close()
    url = f"sqlite:///{literal}"
    try:
        parse_db_url(url)
    except UsageError as exc:
        assert f"names two files: {decoded}" in exc.message and "write %25" in (exc.hint or "")
    else:
        raise AssertionError("an ambiguous URL was accepted")
    refused = cli("backup", "run", "--db", url, "--store", str(tmp_path / "store"))
    assert refused.exit_code == 2 and "names two files" in refused.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").glob("*.json"))
    decoded.unlink()
    assert simple_sqlite_path(url) == literal and parse_db_url(url).sqlite_path == literal
    done = cli("backup", "run", "--db", url, "--store", str(tmp_path / "store"), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["manifest"]["row_counts"] == {"wanted": 0}
    # a %-escape with no such file as written keeps its usual meaning
    spaced = tmp_path / "sp ace.db"
    spaced.write_bytes(b"")
    assert parse_db_url(f"sqlite:///{tmp_path}/sp%20ace.db").sqlite_path == spaced
