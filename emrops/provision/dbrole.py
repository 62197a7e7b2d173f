"""The database role of the web app's managed identity (a post-provision step).

Azure creates Entra ID roles only through ``pgaadauth_create_principal``, run by the
server's Entra ID administrator, so provisioning cannot do it: :func:`grant_sql` writes the
statements, and :func:`check_role` verifies afterwards that the role exists, may log in
and holds the privileges the sim server needs (exit 3 naming what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from emrops.db.engine import create_engine, db_errors, parse_db_url
from emrops.errors import UsageError

SCHEMA = "public"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def grant_sql(role: str, database: str = "emrsim") -> str:
    """What the Entra ID administrator runs (psql, signed in with a token) for ``role``."""
    if not role.strip():
        raise UsageError("the role name is empty", hint="pass the app identity name, see outputs")
    r, db = _ident(role), _ident(database)
    privileges = ", ".join(TABLE_PRIVILEGES)
    return "\n".join(
        [
            "-- run in database postgres as the Entra ID administrator:",
            f"SELECT * FROM pgaadauth_create_principal({_literal(role)}, false, false);",
            f"GRANT CONNECT ON DATABASE {db} TO {r};",
            f"-- then in database {database}:",
            f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {r};",
            f"GRANT {privileges} ON ALL TABLES IN SCHEMA {SCHEMA} TO {r};",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {r};",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT {privileges} ON TABLES TO {r};",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT USAGE, SELECT ON SEQUENCES TO {r};",
            "",
        ]
    )


@dataclass
class RoleCheck:
    role: str
    database: str
    exists: bool = False
    can_login: bool = False
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exists and self.can_login and not self.missing


def check_role(db_url: str, role: str) -> RoleCheck:
    """Whether ``role`` exists, can log in, may connect to the database, use and create in
    the public schema, and read/write every table there."""
    db = parse_db_url(db_url)
    if db.engine_name != "postgresql":
        raise UsageError(f"{db.masked()} is not PostgreSQL", hint="pass the server's URL with --db")
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.connect() as conn:
            database = str(conn.exec_driver_sql("SELECT current_database()").scalar())
            result = RoleCheck(role=role, database=database)
            row = conn.execute(
                sa.text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).first()
            if row is None:
                result.missing.append(f"role {role!r} does not exist")
                return result
            result.exists, result.can_login = True, bool(row[0])
            if not result.can_login:
                result.missing.append("LOGIN")
            checks = [
                (
                    "CONNECT on the database",
                    "has_database_privilege(:r, current_database(), 'CONNECT')",
                ),
                (f"USAGE on schema {SCHEMA}", f"has_schema_privilege(:r, '{SCHEMA}', 'USAGE')"),
                (f"CREATE on schema {SCHEMA}", f"has_schema_privilege(:r, '{SCHEMA}', 'CREATE')"),
            ]
            for label, expr in checks:
                if not conn.execute(sa.text(f"SELECT {expr}"), {"r": role}).scalar():
                    result.missing.append(label)
            tables = conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind IN ('r', 'p') ORDER BY 1"
                ),
                {"s": SCHEMA},
            ).scalars()
            for table in tables:
                qualified = f"{_ident(SCHEMA)}.{_ident(table)}"
                for privilege in TABLE_PRIVILEGES:
                    allowed = conn.execute(
                        sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                        {"r": role, "t": qualified, "p": privilege},
                    ).scalar()
                    if not allowed:
                        result.missing.append(f"{privilege} on {table}")
            return result
    finally:
        engine.dispose()
