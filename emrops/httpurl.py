"""The sim server's base URL as given on the command line (``--url``), checked before any
request: http or https, a host, a valid port. urlsplit itself raises ValueError on some bad
URLs (an unclosed IPv6 bracket), which must not reach the user as a traceback."""

from __future__ import annotations

from urllib.parse import urlsplit

from emrops.errors import UsageError

HINT = "give the sim server's base URL, e.g. http://127.0.0.1:8000"


def check_url(url: str, option: str = "--url") -> str:
    """``url`` without a trailing slash; UsageError (exit 2) naming the option otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"invalid {option} {url!r}: {exc}", hint=HINT) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid {option} {url!r}", hint=HINT)
    return url.rstrip("/")
