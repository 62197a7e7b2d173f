"""Passwordless PostgreSQL on Azure: Entra ID access tokens as the connection password.

``db_auth = "azure"`` (config, ``EMROPS_DB_AUTH``) or ``?auth=azure`` in a PostgreSQL URL
makes every new connection authenticate with a token from ``DefaultAzureCredential`` for
:data:`SCOPE`. The ``auth`` parameter is emrops's own: it is removed before libpq, psycopg
or pg_dump see the URL.

- Tokens are fetched when a connection is opened and reused until :data:`REFRESH_MARGIN`
  seconds before they expire; an open connection outlives its token (PostgreSQL checks it
  only at login).
- A token is registered with :mod:`emrops.secrets`, so it is masked wherever it could
  appear. It reaches pg_dump/pg_restore only as ``PGPASSWORD`` in their environment.
- Azure and token connections default to ``sslmode=verify-full`` against the system CA
  bundle (Azure's roots, DigiCert Global Root G2 and Microsoft RSA Root CA 2017, are in
  it); loopback hosts (127.0.0.0/8, ::1, localhost) keep libpq's default. An explicit
  ``sslmode``/``sslrootcert`` in the URL or ``PGSSLMODE``/``PGSSLROOTCERT`` wins.

SQLAlchemy engines get this through one ``do_connect`` listener on every Engine
(:func:`install`); code that calls psycopg or a PostgreSQL client tool directly uses
:func:`libpq`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from emrops import secrets
from emrops.errors import DatabaseError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
AUTH_PARAM = "auth"
AUTH_MODES = ("password", "azure")
REFRESH_MARGIN = 300.0  # seconds before expiry at which a token is replaced
AZURE_HOST_SUFFIXES = (".postgres.database.azure.com",)
CREDENTIAL_HINT = (
    "sign in with `az login`, or run where a managed identity or AZURE_CLIENT_ID/"
    "AZURE_TENANT_ID/AZURE_FEDERATED_TOKEN_FILE are set (DefaultAzureCredential)"
)


class TokenSource:
    """Access tokens for one scope from a TokenCredential, replaced before they expire."""

    def __init__(
        self,
        credential: Any,
        scope: str = SCOPE,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ):
        self.credential = credential
        self.scope = scope
        self.margin = margin
        self.clock = clock
        self._lock = threading.Lock()
        self._token: Any = None

    def token(self) -> str:
        """A token valid for at least ``margin`` more seconds (fetched when needed)."""
        with self._lock:
            current = self._token
            if current is None or current.expires_on - self.margin <= self.clock():
                current = self._fetch()
                self._token = current
            return str(current.token)

    def _fetch(self) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self.credential.get_token(self.scope)
        except ClientAuthenticationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(
                f"cannot get an Entra ID token for PostgreSQL: {secrets.mask(first)}",
                hint=CREDENTIAL_HINT,
            ) from None
        secrets.register_secret(str(token.token))
        return token


_lock = threading.Lock()
_source: TokenSource | None = None


def use_credential(credential: Any | None, margin: float = REFRESH_MARGIN) -> None:
    """Use ``credential`` (an azure-core TokenCredential) for database tokens from now on;
    ``None`` goes back to ``DefaultAzureCredential``. For programs embedding emrops."""
    global _source
    with _lock:
        _source = TokenSource(credential, margin=margin) if credential is not None else None


def token_source() -> TokenSource:
    global _source
    with _lock:
        if _source is None:
            from azure.identity import DefaultAzureCredential

            _source = TokenSource(DefaultAzureCredential())
        return _source


def auth_mode(url: URL) -> str:
    """``azure`` or ``password`` (the default); UsageError for anything else."""
    value = url.query.get(AUTH_PARAM)
    if value is None:
        return "password"
    mode = value if isinstance(value, str) else value[-1]
    if mode not in AUTH_MODES:
        raise UsageError(
            f"unknown auth={mode!r} in the database URL",
            hint="use ?auth=azure for Entra ID tokens, or leave it out for a password",
        )
    return mode


def with_auth(url: str, mode: str | None) -> str:
    """``url`` with ``auth=<mode>`` added when ``mode`` is azure and the URL is PostgreSQL
    without its own auth parameter (db_auth from config or the environment)."""
    if mode in (None, "", "password"):
        return url
    if mode not in AUTH_MODES:
        raise UsageError(f"invalid db_auth {mode!r}", hint="use password or azure")
    if not url.startswith(("postgresql", "postgres:")):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if AUTH_PARAM in parsed.query:
        return url
    return parsed.update_query_dict({AUTH_PARAM: mode}).render_as_string(hide_password=False)


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8, ::1 and Unix sockets (no host or a path)."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_azure_host(host: str | None) -> bool:
    return bool(host) and str(host).lower().rstrip(".").endswith(AZURE_HOST_SUFFIXES)


def system_ca_bundle() -> str | None:
    """The OS CA bundle file (holds Azure's root CAs), or None when there is none."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def tls_defaults(host: str | None, token_auth: bool, given: dict[str, Any]) -> dict[str, str]:
    """sslmode/sslrootcert to add for ``host``: verify-full for Azure and token connections
    that are not loopback, unless the URL or the environment already chose."""
    if is_loopback(host) or not (token_auth or is_azure_host(host)):
        return {}
    out: dict[str, str] = {}
    if "sslmode" not in given and not os.environ.get("PGSSLMODE"):
        out["sslmode"] = "verify-full"
    if "sslrootcert" not in given and not os.environ.get("PGSSLROOTCERT"):
        bundle = system_ca_bundle()
        if bundle:
            out["sslrootcert"] = bundle
    return out


def connect_params(params: dict[str, Any]) -> dict[str, Any]:
    """psycopg connect keyword arguments with ``auth`` resolved (a token as the password)
    and TLS defaults applied. ``params`` is not modified."""
    out = dict(params)
    mode = out.pop(AUTH_PARAM, None)
    if isinstance(mode, (list, tuple)):
        mode = mode[-1]
    if mode not in (None, *AUTH_MODES):
        raise UsageError(f"unknown auth={mode!r} in the database URL", hint="use ?auth=azure")
    token_auth = mode == "azure"
    host = out.get("host")
    out.update(tls_defaults(str(host) if host else None, token_auth, out))
    if token_auth:
        out["password"] = token_source().token()
    return out


def libpq(url: URL) -> tuple[str, dict[str, Any]]:
    """For direct psycopg / client-tool use: a libpq URI without password or ``auth``, and
    the connection parameters that must travel apart from it (password or token, TLS
    defaults). Pass them as psycopg keyword arguments, or as PG* variables to a tool."""
    token_auth = auth_mode(url) == "azure"
    query = {k: v for k, v in url.query.items() if k != AUTH_PARAM}
    extra: dict[str, Any] = {}
    if url.password:
        extra["password"] = str(url.password)
    extra.update(tls_defaults(url.host, token_auth, query))
    if token_auth:
        extra["password"] = token_source().token()
    return libpq_uri(url, query), extra


def libpq_uri(url: URL, query: dict[str, Any]) -> str:
    """``postgresql://user@host:port/dbname?query`` with every part percent-encoded and no
    password. Built here, not by SQLAlchemy: ``URL.set(password=None)`` keeps the password
    (None means "unchanged"), which then reached pg_dump's command line, readable by every
    local user in ``ps``; and its rendering leaves a space in a database name, which libpq
    refuses ("unexpected spaces found")."""
    user = quote(url.username, safe="") + "@" if url.username else ""
    host = url.host or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    database = quote(url.database, safe="") if url.database else ""
    params = urlencode(query, doseq=True, quote_via=quote)
    return f"postgresql://{user}{host}{port}/{database}" + (f"?{params}" if params else "")


PG_ENV = {"password": "PGPASSWORD", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}


def tool_env(extra: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for pg_dump/pg_restore/psql carrying :func:`libpq`'s extra parameters."""
    env = dict(os.environ if base is None else base)
    for key, value in extra.items():
        env[PG_ENV[key]] = str(value)
    return env


def _on_do_connect(dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    if dialect.name != "postgresql":
        return
    resolved = connect_params(cparams)
    cparams.clear()
    cparams.update(resolved)


_installed = False


def install() -> None:
    """Resolve ``auth`` and TLS defaults on every SQLAlchemy engine's new connections."""
    global _installed
    if _installed:
        return
    import sqlalchemy as sa

    sa.event.listen(sa.engine.Engine, "do_connect", _on_do_connect)
    _installed = True
