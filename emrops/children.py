"""One supervisor loop for spawned worker processes (benchmark clients, load generators).

Children report on a queue as ``(kind, index, payload)`` tuples. The loop starts them, hands
every message to the caller, fails when a child dies or the deadline passes, and always
joins (or terminates) them on the way out.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from emrops.errors import EmropsError


def supervise(
    procs: Sequence[BaseProcess],
    out: Any,
    *,
    deadline: float,
    on_message: Callable[[str, int, Any], bool],
    failure: Callable[[str], EmropsError],
    child: str,
) -> None:
    """Start ``procs`` and pump ``out`` until each child has sent its final message
    (``on_message`` returns True for it). ``deadline`` is a ``time.monotonic()`` value;
    ``failure(text)`` builds the error raised when it passes or a child dies (``child`` names
    one child in that text, e.g. "client process")."""
    for proc in procs:
        proc.start()
    finished = 0
    try:
        while finished < len(procs):
            try:
                kind, index, payload = out.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise failure(f"{child}es did not finish in time") from None
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise failure(f"a {child} died (exit {dead[0].exitcode})") from None
                continue
            if on_message(kind, index, payload):
                finished += 1
    finally:
        for proc in procs:
            proc.join(timeout=5 if finished == len(procs) else 0.1)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
