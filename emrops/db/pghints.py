"""What to try when a connection to PostgreSQL fails: one table of libpq's messages and hints.

libpq puts the server's FATAL after "connection failed: connection to server at ... failed:",
so a generic "connection failed" test would swallow every specific cause. The specific rows
come first; the first row whose words all occur in the message wins. ``{where}`` names the
place the URL came from (``--to``, ``the URL``).
"""

from __future__ import annotations

import re

_FULL = (
    "PostgreSQL's connection limit is reached: close idle connections, lower migrate-db's "
    "--jobs, or raise the limit (CONNECTION LIMIT, max_connections)"
)

_AZURE = (
    "the Azure server refused the password: with Entra ID sign-in (password sign-in off, as "
    'in production) add ?auth=azure to {where} (or set db_auth = "azure"), signed in as a '
    "principal with a database role (emrops provision db-role); else set the right password in "
    "PGPASSWORD or EMROPS_DB_PASSWORD"
)

# (words that must all occur in the lowered message, hint)
_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ('database "', "does not exist"),
        "the database does not exist: create it first (createdb NAME), or fix its name in "
        "{where} (psql -l lists the server's databases)",
    ),
    (
        ('role "', "does not exist"),
        "the user does not exist on this server: fix the user in {where}, or create it "
        "(CREATE ROLE ... LOGIN)",
    ),
    # Azure Database for PostgreSQL with password sign-in off (the guidance's production set-up)
    # refuses every password: the fix is a token, not another password
    (
        ("password authentication failed", ".postgres.database.azure.com"),
        _AZURE,
    ),
    (
        ("no password supplied", ".postgres.database.azure.com"),
        _AZURE,
    ),
    (
        ("password authentication failed",),
        "the password was refused: set the right one in PGPASSWORD or EMROPS_DB_PASSWORD "
        "(never in {where})",
    ),
    (
        ("no password supplied",),
        "the server asks for a password: set it in PGPASSWORD or EMROPS_DB_PASSWORD",
    ),
    (
        ("no pg_hba.conf entry",),
        "the server's pg_hba.conf has no rule for this host, user and database (or needs "
        "SSL): ask its administrator, or add ?sslmode=require to {where} if it names hostssl",
    ),
    (
        ("server does not support ssl",),
        "the server has no SSL: drop sslmode=require (or verify-*) from {where}, or enable "
        "SSL on the server",
    ),
    (
        ("certificate verify failed",),
        "the server's TLS certificate was not accepted: check sslrootcert in {where} "
        "(sslmode=verify-full needs the CA that signed it)",
    ),
    (
        ("permission denied for database",),
        "the user may not connect to this database: GRANT CONNECT ON DATABASE ... TO the "
        "user, or use another user",
    ),
    (
        ("too many connections",),
        _FULL,
    ),
    (
        ("connection slots are reserved",),
        _FULL,
    ),
    (
        ("the database system is starting up",),
        "the server is still starting (or recovering): try again in a moment",
    ),
    (
        ("the database system is shutting down",),
        "the server is shutting down: try again once it is back",
    ),
    (
        ("the database system is in recovery mode",),
        "the server is recovering after a crash: try again in a moment",
    ),
    (
        ("failed to resolve host",),
        "the host name in {where} does not resolve: check its spelling and this machine's DNS",
    ),
    (
        ("could not translate host name",),
        "the host name in {where} does not resolve: check its spelling and this machine's DNS",
    ),
    (
        ("timeout expired",),
        "no answer from the server in time: check the host and port in {where}, and that a "
        "firewall lets this machine through",
    ),
)

_GENERIC = "check that PostgreSQL is running and the host/port in {where} are right"
_CONNECTING = re.compile(r"connection refused|could not connect|connection failed|no route")


def connect_hint(message: str, where: str = "the URL") -> str | None:
    """The hint for a failed connection's message, or None when nothing here fits."""
    lowered = message.lower()
    for words, hint in _RULES:
        if all(w in lowered for w in words):
            return hint.format(where=where)
    if _CONNECTING.search(lowered):
        return _GENERIC.format(where=where)
    return None
