"""Pure policy: type mapping, identifier shortening, SQL translation (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emrops.migrate.profile import ColumnProfile
from emrops.migrate.reflect import affinity, parse_checks, parse_index_sql
from emrops.migrate.sql import Catalog, translate_default
from emrops.migrate.typemap import PG_MAX_IDENT, map_column, shorten

declared_types = st.sampled_from(
    [
        "",
        "INTEGER",
        "INT",
        "BIGINT",
        "REAL",
        "FLOAT",
        "DOUBLE",
        "DOUBLE PRECISION",
        "TEXT",
        "VARCHAR(20)",
        "CHAR(32)",
        "CLOB",
        "BLOB",
        "NUMERIC",
        "NUMERIC(10,2)",
        "DECIMAL(5,1)",
        "BOOLEAN",
        "DATETIME",
        "TIMESTAMP",
        "DATE",
        "JSON",
        "anything goes",
    ]
)
profiles = st.builds(
    ColumnProfile,
    n_int=st.integers(0, 5),
    n_real=st.integers(0, 5),
    n_text=st.integers(0, 5),
    n_blob=st.integers(0, 5),
    n_null=st.integers(0, 5),
    n_bool=st.integers(0, 5),
    n_iso=st.integers(0, 5),
    n_json=st.integers(0, 5),
    n_nul=st.integers(0, 2),
    n_bad_utf8=st.integers(0, 2),
    n_fraction=st.integers(0, 2),
    max_len=st.integers(0, 50),
)


@given(declared_types, profiles)
def test_never_float4_and_deterministic(declared: str, p: ColumnProfile) -> None:
    m = map_column(declared, p)
    assert m.pg_type not in ("real", "float4")
    assert map_column(declared, p) == m
    if affinity(declared) == "REAL" and "BOOL" not in declared.upper():
        assert m.pg_type == "double precision"


@given(profiles)
def test_nul_or_bad_utf8_text_is_always_an_anomaly(p: ColumnProfile) -> None:
    p.n_text = max(p.n_text, p.n_nul + p.n_bad_utf8)
    m = map_column("TEXT", p)
    conditions = {a.condition for a in m.anomalies}
    assert ("nul" in conditions) == bool(p.n_nul)
    assert ("bad_utf8" in conditions) == bool(p.n_bad_utf8)
    ruled = map_column("TEXT", p, rule={"type": "bytea"})
    assert ruled.pg_type == "bytea" and not ruled.anomalies


def test_examples() -> None:
    ints = ColumnProfile(n_int=3)
    assert map_column("INTEGER", ints, rowid_alias=True).identity
    assert map_column("BOOLEAN", ColumnProfile(n_int=2, n_bool=2)).pg_type == "boolean"
    assert map_column("BOOLEAN", ColumnProfile(n_int=2, n_bool=1)).anomalies
    assert map_column("NUMERIC(10,2)", ints).pg_type == "numeric(10,2)"
    assert map_column("TEXT", ColumnProfile(n_text=2, n_iso=2)).pg_type == "timestamptz"
    epoch = map_column("DATETIME", ints)
    assert epoch.anomalies and "epoch" in epoch.anomalies[0].message
    assert (
        map_column("DATETIME", ints, rule={"type": "timestamptz", "epoch": "ms"}).converter
        == "ts_epoch_ms"
    )
    assert map_column("JSON", ColumnProfile(n_text=2, n_json=2)).pg_type == "jsonb"
    assert map_column("BLOB", ColumnProfile(n_blob=1)).pg_type == "bytea"
    assert map_column("CHAR(32)", ColumnProfile(n_text=2, n_uuid=2)).pg_type == "uuid"
    assert map_column("CHAR(32)", ColumnProfile(n_text=2, n_uuid=1)).pg_type == "varchar(32)"
    mixed = map_column("", ColumnProfile(n_int=1, n_text=1))
    assert mixed.anomalies[0].condition == "mixed"


@given(st.lists(st.text(min_size=1, max_size=90), min_size=1, max_size=30))
def test_shorten_fits_is_unique_and_deterministic(names: list[str]) -> None:
    def assign(items: list[str]) -> list[str]:
        taken: set[str] = set()
        out = []
        for name in dict.fromkeys(items):
            new = shorten(name, taken)
            taken.add(new)
            out.append(new)
        return out

    first = assign(names)
    assert first == assign(names)
    assert len(set(first)) == len(first)
    assert all(len(n.encode()) <= PG_MAX_IDENT for n in first)
    for orig, new in zip(dict.fromkeys(names), first, strict=True):
        if len(orig.encode()) <= PG_MAX_IDENT and orig not in first[: first.index(new)]:
            assert new == orig


def test_long_names_colliding_after_truncation_stay_distinct() -> None:
    a, b = "x" * 70 + "_alpha", "x" * 70 + "_beta"
    taken: set[str] = set()
    na = shorten(a, taken)
    taken.add(na)
    nb = shorten(b, taken)
    assert na != nb and len(na) <= 63 and len(nb) <= 63


def test_defaults_translate() -> None:
    assert translate_default("CURRENT_TIMESTAMP", "timestamptz") == ("CURRENT_TIMESTAMP", True)
    assert translate_default("(datetime('now'))", "timestamptz") == ("CURRENT_TIMESTAMP", True)
    sql, ok = translate_default("(strftime('%Y-%m-%dT%H:%M:%fZ','now'))", "text")
    assert (
        ok
        and sql == 'to_char(now() AT TIME ZONE \'UTC\', \'YYYY"-"MM"-"DD"T"HH24":"MI":"SS.MS"Z"\')'
    )
    assert translate_default("(strftime('%s','now'))", "bigint") == (
        "extract(epoch from now())::bigint",
        True,
    )
    assert translate_default("1", "boolean") == ("true", True)
    assert translate_default("'it''s'", "text") == ("'it''s'", True)
    assert translate_default("random()", "bigint")[1]  # a random bigint (test_random_defaults)
    assert translate_default("random()", "boolean") == (None, False)


def test_expression_translation() -> None:
    catalog = Catalog()
    catalog.add("t", "t", [("active", "active", "boolean"), ("name", "Name", "text")])
    assert catalog.expr("active = 1 AND name == 'x'", "t") == '"active" = TRUE AND "Name" = \'x\''
    assert catalog.expr("ifnull([name], 'a = 1')", "T") == "COALESCE(\"Name\", 'a = 1')"


def test_sql_parsing() -> None:
    checks = parse_checks(
        "CREATE TABLE t (a INT CHECK (a > 0), b TEXT, CONSTRAINT c2 CHECK "
        "(length(b) < 5 AND b <> ')'))"
    )
    assert [(c.name, c.expr) for c in checks] == [
        (None, "a > 0"),
        ("c2", "length(b) < 5 AND b <> ')'"),
    ]
    elements, where = parse_index_sql("CREATE INDEX i ON t (lower(a), b DESC) WHERE a IS NOT NULL")
    assert elements == ["lower(a)", "b DESC"] and where == "a IS NOT NULL"


def test_declared_uuid_or_guid_holding_text_is_uuid_or_text_not_numeric() -> None:
    # UUID and GUID have NUMERIC affinity in SQLite; hand-written schemas use them for text
    only_uuids = ColumnProfile(n_text=5, n_uuid=5, max_len=36)
    for declared in ("UUID", "guid", "UUID NOT NULL"):
        m = map_column(declared, only_uuids)
        assert (m.pg_type, m.converter, m.anomalies) == ("uuid", "pass", []), declared
    some = map_column("UUID", ColumnProfile(n_text=5, n_uuid=3, max_len=40))
    assert (some.pg_type, some.anomalies) == ("text", [])
    assert some.notes == ["not every value is a UUID (2): kept as text"]
    mixed = map_column("UUID", ColumnProfile(n_text=2, n_uuid=2, n_int=1, max_len=36))
    assert mixed.pg_type == "text" and [a.condition for a in mixed.anomalies] == ["integer"]
    numbers = map_column("UUID", ColumnProfile(n_int=3))
    assert numbers.pg_type == "numeric"  # numbers alone: as before
