"""Masking of secrets in anything emrops prints, logs or writes.

Passwords in URLs/DSNs, Azure connection-string keys and SAS tokens, and any
value registered with :func:`register_secret` are replaced by ``***``.
"""

from __future__ import annotations

import re

MASK = "***"
_registered: set[str] = set()

# scheme://user:password@host  ->  scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)"
)
# AccountKey=...; SharedAccessSignature=...; password=... (libpq key/value DSN)
_KEY_VALUE = re.compile(
    r"(?P<pre>\b(?:AccountKey|SharedAccessSignature|password|Password|sig)=)(?P<pw>[^;&\s]+)"
)


def register_secret(value: str | None) -> None:
    """Remember a secret value (e.g. a token from the environment) so it is masked everywhere."""
    if value and len(value) >= 4:
        _registered.add(value)


def mask(text: object) -> str:
    """Return ``text`` as a string with every known kind of secret replaced by ``***``."""
    out = str(text)
    out = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("post"), out)
    out = _KEY_VALUE.sub(lambda m: m.group("pre") + MASK, out)
    for secret in sorted(_registered, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def url_has_password(url: str) -> bool:
    """True when a URL carries a password in its userinfo part."""
    match = _URL_PASSWORD.search(url)
    return bool(match and match.group("pw"))
