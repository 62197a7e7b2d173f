"""Typed records read back from JSON files that people or crashes can damage.

A state file (a checklist run, a scheduled job's status) is read into a dataclass. ``**data``
alone accepts any value for any field, so a hand-edited or damaged file failed later, while it
was rendered or compared ("unexpected TypeError"). :func:`check_fields` checks the simple
declared types first, so the reader can name the field and treat the file as damaged.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields
from typing import Any


def check_fields(kind: type, data: dict[str, Any], where: str, *, unknown_ok: bool = False) -> None:
    """ValueError when ``data`` lacks a required field of the dataclass ``kind``, has one it
    does not know (unless ``unknown_ok``), or one whose value is not of the declared simple
    type (containers are checked as containers, not item by item)."""
    hints = typing.get_type_hints(kind)
    for f in fields(kind):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{where} has no {f.name!r}")
            continue
        if not conforms(data[f.name], hints[f.name]):
            raise ValueError(
                f"{where}: {f.name!r} is {type(data[f.name]).__name__}, "
                f"not {type_name(hints[f.name])}"
            )
    unknown = set(data) - {f.name for f in fields(kind)}
    if unknown and not unknown_ok:
        raise ValueError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")


def type_name(hint: Any) -> str:
    """A declared type as people read it: str, int, dict[str, str] | None."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a declared type (see :func:`check_fields`)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is not None:  # dict[...], list[...]: the container's type
        return isinstance(value, origin)
    if hint is int:
        return type(value) is int  # not bool
    if hint is float:
        return type(value) in (int, float)  # JSON writes 2.0 as 2 too
    return hint is Any or not isinstance(hint, type) or isinstance(value, hint)
