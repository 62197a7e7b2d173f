"""``PRAGMA integrity_check`` on a database that uses the application's own collations or
functions.

Apps register collations (``LOCALIZED``, ``UNICODE``, ``NOCASE_UTF8``...) and SQL functions on
their connections and use them in the schema: a column's ``COLLATE``, an index on an
expression, a CHECK, a generated column. SQLite then refuses to check the file anywhere else
("no such collation sequence: X", "unknown function: f()"), and a verify that stopped there
called a good backup damaged.

:func:`integrity_problems` registers a stand-in for each missing name (a total order for a
collation, NULL for a function) until the check runs. The stand-ins cannot reproduce what the
application computes, so what they make the check say about the objects that use them (entries
"missing from index" X, "CHECK constraint failed in" T, a "NULL value in" T.C, a WITHOUT ROWID
table T's "row not in PRIMARY KEY order") is excused and
named as not checkable here. Everything else, the b-tree structure of every page above all, is
checked as usual and reported as problems.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

from emrops.db.appdefs import byte_order

_COLLATION = re.compile(r"no such collation sequence: (.+)$")
_FUNCTION = re.compile(r"(?:unknown|no such) function: ([^\s(]+)")
_INDEX = re.compile(
    r"(?:row \d+ missing from index|wrong # of entries in index|non-unique entry in index) (\S+)"
)
_TABLE = re.compile(
    r"(?:CHECK constraint failed in|NULL value in|row not in PRIMARY KEY order for) ([^.\s]+)"
)
MAX_STAND_INS = 50
MAX_LINES = 100_000  # integrity_check's report limit when stand-ins are in place


@dataclass
class Integrity:
    problems: list[str]  # what integrity_check says is wrong (["ok"] when nothing)
    stand_ins: list[str] = field(default_factory=list)  # e.g. "collation LOCALIZED"
    excused: list[str] = field(default_factory=list)  # lines only the stand-ins can explain

    @property
    def ok(self) -> bool:
        return self.problems == ["ok"]

    def detail(self) -> str:
        if not self.stand_ins:
            return "; ".join(self.problems[:5]) + self._only_indexes()
        text = "; ".join(self.problems[:5]) + self._only_indexes() if not self.ok else "ok"
        objects = sorted({_object_of(line) for line in self.excused})
        return (
            f"{text} (the schema uses the application's {', '.join(self.stand_ins)}, which only "
            "the application defines: page structure and everything else checked"
            + (f"; not checkable here: {', '.join(objects)}" if objects else "")
            + ")"
        )

    def _only_indexes(self) -> str:
        """When every problem is an index entry (quick_check passes such a file), say so: the
        rows are whole and REINDEX rebuilds the index, in the source too when it says the same
        (a copy is faithful to it); restoring an older backup would lose newer rows for it."""
        if self.ok or not self.problems:
            return ""
        matches = [_INDEX.search(p) for p in self.problems]
        names = {m.group(1) for m in matches if m is not None}
        if not names or None in matches:
            return ""
        listed = ", ".join(sorted(names))
        return (
            f" (only entries of index {listed}: the table rows are whole; `REINDEX {listed}` "
            "rebuilds it, in the source database too when its `PRAGMA integrity_check` says "
            "the same, then take a new backup)"
        )


def _null(*_args: object) -> None:
    return None


def integrity_problems(conn: sqlite3.Connection) -> Integrity:
    """Run integrity_check on ``conn`` (registering stand-ins as needed, see the module)."""
    stand_ins: list[str] = []
    while True:
        try:
            # with stand-ins, their own lines must not use up the 100 SQLite reports by default
            pragma = (
                f"PRAGMA integrity_check({MAX_LINES})" if stand_ins else "PRAGMA integrity_check"
            )
            lines = [str(r[0]) for r in conn.execute(pragma)]
            break
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            collation, function = _COLLATION.search(text), _FUNCTION.search(text)
            if len(stand_ins) >= MAX_STAND_INS or not (collation or function):
                raise
            if collation:
                conn.create_collation(collation.group(1), byte_order)
                stand_ins.append(f"collation {collation.group(1)}")
            elif function:
                conn.create_function(function.group(1), -1, _null)
                stand_ins.append(f"function {function.group(1)}")
    if not stand_ins or lines == ["ok"]:
        return Integrity(lines, stand_ins)
    names = [s.split(" ", 1)[1] for s in stand_ins]
    uses = _objects_using(conn, names)
    excused = [line for line in lines if _object_of(line) in uses]
    problems = [line for line in lines if line not in excused] or ["ok"]
    if len(lines) >= MAX_LINES:  # cut short: what came after may be damage
        cut = f"integrity_check stopped at {MAX_LINES} lines: the rest is unknown"
        problems = [p for p in problems if p != "ok"] + [cut]
    return Integrity(problems, stand_ins, excused)


def _object_of(line: str) -> str:
    """The index or table an integrity_check line is about ("" when it names neither)."""
    m = _INDEX.search(line)
    if m:
        return f"index {m.group(1)}"
    m = _TABLE.search(line)
    return f"table {m.group(1)}" if m else ""


def _objects_using(conn: sqlite3.Connection, names: list[str]) -> set[str]:
    """Indexes and tables whose SQL names one of ``names`` (an index also when its table does:
    a column's COLLATE applies to every index on it)."""
    words = re.compile(
        r"(?<![\w$])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w$])", re.I
    )
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    tables = {tbl for kind, _n, tbl, sql in rows if kind == "table" and sql and words.search(sql)}
    found = {f"table {t}" for t in tables}
    for kind, name, tbl, sql in rows:
        if kind == "index" and ((sql and words.search(sql)) or tbl in tables):
            found.add(f"index {name}")
    return found
