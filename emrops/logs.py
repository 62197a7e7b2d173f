"""Logging for people (rich, on stderr) and machines (JSON lines on stderr).

Every run gets a run id (sortable: UTC time + random suffix) that appears in
each log line, so the lines of one cron run can be found again.
"""

from __future__ import annotations

import json
import logging
import re
import secrets as _random
import sys
import time
from datetime import UTC, datetime

from emrops import secrets

LOGGER_NAME = "emrops"


def new_run_id() -> str:
    """A sortable run id: ``20261125T191900Z-3fa2c1``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime | None = None) -> str:
    """UTC ISO-8601 with a Z suffix and millisecond precision."""
    moment = (moment or utc_now()).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _RunIdFilter(logging.Filter):
    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, run_id, msg.

    Extras given as ``extra={"data": {...}}`` are merged into the object.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": iso_utc(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "msg": secrets.mask(record.getMessage()),
        }
        entry["message"] = entry["msg"]  # the key error lines use; "msg" kept for old readers
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            entry.update({k: secrets.mask(v) if isinstance(v, str) else v for k, v in data.items()})
        if record.exc_info:
            entry["exc"] = secrets.mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


# Characters a file, a program's output or a typed answer must not send to a terminal
# as they are: C0/C1 control characters (ESC starts sequences that recolour, retitle, clear or
# rewrite the screen; CR overwrites a line) other than tab and newline, DEL, and the Unicode
# bidirectional overrides and isolates that make text display in another order than it reads.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every unsafe character written as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class _MaskingFormatter(logging.Formatter):
    """Text log lines: secrets masked, terminal escapes shown inert (a job's error can quote
    a server's reply or a file name), and a line break in a message indented, so a message
    cannot pass for a log line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        text = printable(secrets.mask(super().format(record)))
        return text.replace("\n", "\n    ")


def setup_logging(log_format: str = "text", level: str = "info", run_id: str | None = None) -> str:
    """Configure the ``emrops`` logger; returns the run id used."""
    run_id = run_id or new_run_id()
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = _MaskingFormatter(
            "%(asctime)s %(levelname)-7s %(message)s  [run %(run_id)s]", "%H:%M:%S"
        )
        formatter.converter = time.gmtime  # UTC, like every time emrops prints
        handler.setFormatter(formatter)
    handler.addFilter(_RunIdFilter(run_id))
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))
    logger.propagate = False
    # psycopg logs a warning ("error ignored terminating <psycopg.Copy ...>") when a COPY
    # ends in an error that emrops reports itself; with no handler of its own it reached
    # stderr unformatted and unmasked, through logging's last resort, beside the real error
    psycopg_logger = logging.getLogger("psycopg")
    if not psycopg_logger.handlers:
        psycopg_logger.addHandler(logging.NullHandler())
    return run_id


def get_logger(name: str) -> logging.Logger:
    """A child of the emrops logger: ``get_logger(__name__)``."""
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
