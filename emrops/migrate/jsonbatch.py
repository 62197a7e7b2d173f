"""jsonb canonical text of many JSON documents at once, for the source side of verification.

:func:`emrops.migrate.convert.canon_jsonb` canonicalises one document per call; called by
SQLite once per value it cost about 3.6 us a document, most of it Python call overhead.
:func:`canon_batch` gives the same texts for a whole batch with no Python code run per
document: the documents are joined into one JSON array and decoded by one call of the C
decoder (the same decoder, key order and number markers as ``canon_jsonb``), each element is
encoded by the C encoder through ``map``, and number markers are removed by ``str.replace``.

Joining is only trusted when it cannot shift a value to another row: every document must be
one JSON value on its own (the caller checks ``json_valid`` in SQLite, which is strict JSON
except in SQLite 3.42-3.44, see :func:`sql_valid_ok`), the joined text must decode as an array
of as many elements, and none may hold ``\\u0000`` (which could spell a number marker). A
batch failing any of these, or holding a number jsonb prints in another form (an exponent,
``-0``), takes ``canon_jsonb`` per document, so the texts are always exactly its texts.
"""

from __future__ import annotations

import json
import operator
import re
import sqlite3
from collections.abc import Callable
from itertools import repeat
from typing import Any

from emrops.migrate.convert import _DECODER, _ENCODE, _NUMBER, _jsonb_number, canon_jsonb

_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_FIRST = operator.itemgetter(0)
# a marked number jsonb prints otherwise than as written: an exponent, or a negative zero
_REWRITTEN = re.compile(r'\\u0000N(?:-0|[^"\\]*[eE])')
_OPEN = operator.methodcaller("replace", '"\\u0000N', "")
_CLOSE = operator.methodcaller("replace", '\\u0000"', "")


def sql_valid_ok() -> bool:
    """Whether SQLite's one-argument ``json_valid`` is strict JSON (JSON5 in 3.42-3.44)."""
    v = sqlite3.sqlite_version_info
    return v < (3, 42, 0) or v >= (3, 45, 0)


def _encoder() -> Callable[[list[Any]], list[str]]:
    if _C_ENCODER is None:  # a Python without the C accelerator
        return lambda objs: list(map(_ENCODE, objs))
    call = _C_ENCODER(
        None, json.JSONEncoder().default, json.encoder.encode_basestring,
        None, ": ", ", ", False, False, False,
    )  # fmt: skip
    probe = call({"a": [1]}, 0)
    if not isinstance(probe, tuple | list) or probe[0] != '{"a": [1]}':  # one piece per value
        return lambda objs: list(map(_ENCODE, objs))
    return lambda objs: list(map(_FIRST, map(call, objs, repeat(0, len(objs)))))


_ENCODE_ALL = _encoder()


def _one_by_one(texts: list[Any]) -> list[str]:
    return list(map(canon_jsonb, texts))


def canon_batch(texts: list[Any]) -> list[str]:
    """``[canon_jsonb(t) for t in texts]`` (raising as it does), for documents each already
    known to be one JSON value (``json_valid``)."""
    if not texts:
        return []
    try:
        joined = "[" + ",".join(texts) + "]"
    except TypeError:  # a value that is not text: canon_jsonb says what it does with it
        return _one_by_one(texts)
    if "\\u0000" in joined:
        return _one_by_one(texts)
    try:
        objs = _DECODER.decode(joined)
    except ValueError:  # a constant jsonb rejects, an integer over 4300 digits, ...
        return _one_by_one(texts)
    if not isinstance(objs, list) or len(objs) != len(texts):
        return _one_by_one(texts)
    out = _ENCODE_ALL(objs)
    every = "".join(out)
    if "\\u0000N" not in every:
        return out
    if _REWRITTEN.search(every):
        return [_NUMBER.sub(_jsonb_number, s) if "\\u0000N" in s else s for s in out]
    # no string holds \u0000 (checked above), so each one in the output is a marker's
    return list(map(_CLOSE, map(_OPEN, out)))
