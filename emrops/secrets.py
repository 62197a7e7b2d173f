"""Masking of secrets in anything emrops prints, logs or writes.

Passwords in URLs/DSNs, Azure connection-string keys and SAS tokens, ``PGPASSWORD=...`` and
other ``key=value`` / ``"key": "value"`` secrets (matched case-insensitively), bearer tokens,
and any value registered with :func:`register_secret` are replaced by ``***``. Subprocess
output (pg_dump, az, a reload command) goes through :func:`mask` before it is shown.
"""

from __future__ import annotations

import re

MASK = "***"
_registered: set[str] = set()

# scheme://user:password@host  ->  scheme://user:***@host. A password may hold a raw "@"
# (and the user too: Azure's "user@server"), so the password runs to the *last* "@" of the
# word: masking a little of a host is better than showing the end of a password.
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/\s\"'<>]*?:)(?P<pw>[^\s\"'<>]*)(?P<post>@)"
)
# Names whose value is a secret, in any case: libpq DSN keys and env variables (PGPASSWORD),
# Azure connection strings (AccountKey, SharedAccessKey, SharedAccessSignature), SAS `sig`,
# and the usual token/secret spellings (EMROPS_SIM_TOKEN, client_secret, api-key, ...).
_SECRET_NAME = (
    r"[A-Za-z0-9_\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|accountkey|"
    r"sharedaccesskey|sharedaccesssignature|credential)[A-Za-z0-9_\-]*|sig"
)
# name=value (DSNs, connection strings, env, query strings) and "name": "value" (JSON)
_KEY_VALUE = re.compile(
    rf"(?P<pre>(?<![A-Za-z0-9_\-])(?:{_SECRET_NAME})\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^;&\s,'\"]+)",
    re.IGNORECASE,
)
_JSON_VALUE = re.compile(
    rf"(?P<pre>[\"'](?:{_SECRET_NAME})[\"']\s*:\s*)(?P<pw>\"(?:[^\"\\]|\\.)*\"|'[^']*')",
    re.IGNORECASE,
)
# Authorization: Bearer <token> / Basic <credentials>
_AUTH_HEADER = re.compile(r"(?P<pre>\b(?:Bearer|Basic)\s+)(?P<pw>[A-Za-z0-9._~+/=\-]{8,})")


def register_secret(value: str | None) -> None:
    """Remember a secret value (e.g. a token from the environment) so it is masked everywhere."""
    if value and len(value) >= 4:
        _registered.add(value)


def _quoted_mask(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[0] + MASK + value[0]
    return MASK


def _masked_pair(m: re.Match[str]) -> str:
    name = m.group("pre").rstrip(" =").lower()
    if name.endswith(("name", "_file", "-file", "path")):  # SharedAccessKeyName=, PGPASSFILE=
        return m.group(0)
    return m.group("pre") + _quoted_mask(m.group("pw"))


def mask(text: object) -> str:
    """Return ``text`` as a string with every known kind of secret replaced by ``***``."""
    out = str(text)
    for secret in sorted(_registered, key=len, reverse=True):
        out = out.replace(secret, MASK)
    out = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("post"), out)
    out = _KEY_VALUE.sub(_masked_pair, out)
    out = _JSON_VALUE.sub(lambda m: m.group("pre") + _quoted_mask(m.group("pw")), out)
    out = _AUTH_HEADER.sub(lambda m: m.group("pre") + MASK, out)
    return out


def url_has_password(url: str) -> bool:
    """True when a URL carries a password in its userinfo part."""
    match = _URL_PASSWORD.search(url)
    return bool(match and match.group("pw"))
