"""The branch-chain ``map_column`` as it was before the rule table (commit 784239e^), kept
verbatim as the oracle of the characterization test (test_typemap_rules.py): the rule table
must decide exactly what this did. A deliberate change of a mapping changes both."""

# ruff: noqa: C901
from __future__ import annotations

from typing import Any

from emrops.migrate.profile import ColumnProfile
from emrops.migrate.reflect import affinity
from emrops.migrate.reflect import declared_precision as _precision
from emrops.migrate.typemap import (
    Anomaly,
    Mapping,
    _kinds,
    _length,
    _ruled,
    _text_checks,
)


def map_column(
    declared: str,
    p: ColumnProfile,
    *,
    rowid_alias: bool = False,
    rule: dict[str, Any] | None = None,
) -> Mapping:
    """Choose the PostgreSQL type for one column. Never returns float4/real."""
    rule = rule or {}
    if rule.get("type"):
        return _ruled(declared, p, rule)
    up = declared.upper()
    aff = affinity(declared)
    kinds = _kinds(p)
    if rowid_alias:
        return Mapping("bigint", "pass", "INTEGER PRIMARY KEY (rowid alias)", identity=True)
    if "BOOL" in up:
        # changed with the rule (boolean text, session 8)
        m = Mapping("boolean", "bool", "BOOLEAN declared, values are 0/1")
        bad = p.n_values - p.n_bool - p.n_bool_text
        if bad:
            m.anomalies.append(
                Anomaly(
                    "bool_bad",
                    bad,
                    "values other than 0/1 or boolean text ('t'/'f', 'true'/'false', "
                    "'yes'/'no', 'on'/'off') in a boolean column",
                )
            )
        if p.n_bool_text:
            m.reason = "BOOLEAN declared, values are 0/1 or boolean text"
            m.notes.append(f"{p.n_bool_text} boolean text value(s) ('t', 'false', ...) converted")
        return m
    if "JSON" in up:
        m = Mapping("jsonb", "jsonb", "JSON declared, every value parses")
        bad = p.n_values - p.n_json
        if bad:
            m.anomalies.append(Anomaly("json_bad", bad, "values that are not valid JSON"))
        _text_checks(p, m)
        return m
    if up.startswith("DATE") and "TIME" not in up:
        m = Mapping("date", "date", "DATE declared, values are YYYY-MM-DD")
        if p.n_values - p.n_date:
            m.anomalies.append(
                Anomaly("date_bad", p.n_values - p.n_date, "values that are not YYYY-MM-DD dates")
            )
        return m
    if "TIME" in up or "DATE" in up:
        if (p.n_int or p.n_real) and not p.n_text:  # changed with the rule (epochs, session 8)
            kind = "real" if p.n_real else "integer"
            m = Mapping("timestamptz", "ts", f"timestamp declared but holds {kind}s")
            m.anomalies.append(
                Anomaly(
                    kind,
                    p.n_int + p.n_real,
                    'numbers in a timestamp column: add a cast rule epoch = "s", "ms" or "us" '
                    '(Unix time), "julian" (Julian day numbers, as julianday() gives) or "2001" '
                    '(seconds since 2001-01-01, Apple Core Data), or type = "double precision" '
                    "to keep the numbers",
                )
            )
            return m
        m = Mapping("timestamptz", "ts", "timestamp declared, ISO-8601 text (naive = UTC)")
        if p.n_date:
            m.notes.append(f"{p.n_date} date-only value(s) become midnight UTC")
        if p.n_values - p.n_iso - p.n_date:
            m.anomalies.append(
                Anomaly(
                    "iso_bad",
                    p.n_values - p.n_iso - p.n_date,
                    "values that are not ISO-8601 timestamps",
                )
            )
        return m
    if aff == "INTEGER":
        m = Mapping("bigint", "bigint", f"{declared or 'INTEGER'}: SQLite integers are 64-bit")
        bad_real = p.n_fraction
        if bad_real:
            m.anomalies.append(
                Anomaly(
                    "fraction",
                    bad_real,
                    "reals with a fraction, or beyond the 64-bit range, in an integer column",
                )
            )
        if p.n_text:
            m.anomalies.append(Anomaly("text", p.n_text, "text in an integer column"))
        if p.n_blob:
            m.anomalies.append(Anomaly("blob", p.n_blob, "blobs in an integer column"))
        return m
    if aff == "REAL":
        m = Mapping(
            "double precision", "double", f"{declared}: SQLite REAL is 8-byte (never float4)"
        )
        for kind, n in (("text", p.n_text), ("blob", p.n_blob)):
            if n:
                m.anomalies.append(Anomaly(kind, n, f"{kind} values in a real column"))
        return m
    if aff == "TEXT":
        if (
            ("UUID" in up or "CHAR(32)" in up.replace(" ", ""))
            and p.n_text
            and p.n_uuid == p.n_values
        ):
            return Mapping("uuid", "pass", f"{declared} holding only UUIDs (SQLAlchemy Uuid)")
        if p.n_text and p.n_iso == p.n_values and not (p.n_nul or p.n_bad_utf8):
            m = Mapping("timestamptz", "ts", "text holding only ISO-8601 timestamps (naive = UTC)")
            return m
        length = _length(declared)
        if length and "CHAR" in up and (p.max_len or 0) <= length:
            m = Mapping(f"varchar({length})", "text", f"{declared}: longest value {p.max_len or 0}")
        else:
            m = Mapping("text", "text", f"{declared}: text")
            if length and "CHAR" in up:
                m.notes.append(
                    f"values up to {p.max_len} characters exceed {declared}: kept as text"
                )
        _text_checks(p, m)
        if p.n_blob:
            m.anomalies.append(Anomaly("blob", p.n_blob, "blobs in a text column"))
        return m
    if aff == "NUMERIC":
        prec = _precision(declared)
        pg = f"numeric({prec[0]},{prec[1]})" if prec else "numeric"
        m = Mapping(pg, "numeric", f"{declared}: exact numeric")
        for kind, n in (("text", p.n_text), ("blob", p.n_blob)):
            if n:
                m.anomalies.append(Anomaly(kind, n, f"{kind} values in a numeric column"))
        return m
    # no declared type (or BLOB): follow the values
    if kinds == ["integer"]:
        return Mapping("bigint", "bigint", "no declared type; every value is an integer")
    if kinds in (["real"], ["integer", "real"]):
        return Mapping("double precision", "double", "no declared type; values are numbers")
    if kinds == ["text"] and p.n_date == p.n_values:
        return Mapping("date", "date", "no declared type; every value is a YYYY-MM-DD date")
    if kinds == ["text"]:
        m = Mapping("text", "text", "no declared type; every value is text")
        _text_checks(p, m)
        return m
    if kinds in (["blob"], []):
        return Mapping("bytea", "bytea", f"{declared or 'no declared type'}: bytes")
    m = Mapping(
        "text" if "blob" not in kinds else "bytea",
        "text_only" if "blob" not in kinds else "bytea_only",
        "mixed value types",
    )
    m.anomalies.append(
        Anomaly(
            "mixed",
            p.n_values,
            f"mixed value types ({', '.join(kinds)}): add a "
            'cast rule type = "text" or "bytea" to accept the conversion',
        )
    )
    return m
