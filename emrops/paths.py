"""Paths a user typed (--store, --target, --source): ``~`` and ``~user`` expanded, or a usage
error naming the part that cannot be (pathlib raises RuntimeError for an unknown user, which
reached users as 'unexpected RuntimeError')."""

from __future__ import annotations

import os
from pathlib import Path

from emrops.errors import UsageError


def user_path(text: str | os.PathLike[str]) -> Path:
    """``Path(text).expanduser()``; UsageError when the home folder it names is unknown."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        head = str(text).split("/", 1)[0]
        raise UsageError(
            f"cannot expand {head!r} in {str(text)!r}: no such user, or no home folder known",
            hint="write the path out in full (or ./~name for a folder really named so)",
        ) from None
