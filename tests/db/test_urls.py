"""The SQLAlchemy-free SQLite URL reader agrees with the full parser wherever it answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrops.db.engine import parse_db_url
from emrops.db.urls import simple_sqlite_path

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
