"""Evidence patterns: checked when a checklist is read, matched against answers with a deadline.

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and a ``b`` takes longer than the
age of the universe, and an evidence prompt would hang with it. Two guards:

* the shape that can never be needed, a repeated group that only repeats (``(a+)+``,
  ``(\\w*)*``, the same as ``a+`` and ``\\w*``), is refused when the checklist is read;
* every other pattern is matched under a deadline (SIGALRM: the regex engine checks for
  signals while it backtracks), and an answer it cannot decide in time is refused with a
  message saying the pattern is at fault.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:  # the parser behind re.compile (re._parser since 3.11)
    import re._parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

DEADLINE = 1.0  # seconds; a sane pattern decides a typed answer in microseconds
MAX_ANSWER = 4000  # characters of one evidence answer


class PatternTimeout(Exception):
    """The pattern did not decide the answer before the deadline."""


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be an evidence pattern, or None."""
    try:
        parsed = sre_parse.parse(pattern)
        re.compile(pattern)
    except re.error as exc:
        return f"bad pattern: {exc}"
    nested = _nested_repeat(parsed)
    if nested:
        return (
            f"pattern {pattern!r} repeats a group that only repeats ({nested}): matching it "
            "can take for ever on an answer that almost fits; write the inner repeat once"
        )
    return None


def full_match(pattern: str, value: str, deadline: float = DEADLINE) -> bool:
    """Whether ``value`` matches all of ``pattern``. Raises PatternTimeout past the deadline."""
    if len(value) > MAX_ANSWER:
        return False
    if threading.current_thread() is not threading.main_thread():
        # signals reach the main thread only; the shape check at load time is the guard here
        return re.fullmatch(pattern, value) is not None
    with _alarm(deadline):
        return re.fullmatch(pattern, value) is not None


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise PatternTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _nested_repeat(parsed: Any) -> str | None:
    """A repeat (max > 1) whose whole body is, through groups, another unbounded repeat."""
    for op, av in parsed:
        if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
            low, high, body = av
            if high > 1 and _only_repeat(body):
                return "like (a+)+"
            found = _nested_repeat(body)
        elif op == sre_parse.SUBPATTERN:
            found = _nested_repeat(av[-1])
        elif op == sre_parse.BRANCH:
            found = next((f for b in av[1] if (f := _nested_repeat(b))), None)
        else:
            found = None
        if found:
            return found
    return None


def _only_repeat(body: Any) -> bool:
    items = list(body)
    while len(items) == 1 and items[0][0] == sre_parse.SUBPATTERN:
        items = list(items[0][1][-1])
    return (
        len(items) == 1
        and items[0][0] in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT)
        and items[0][1][1] == sre_parse.MAXREPEAT
    )
