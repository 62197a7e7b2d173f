"""The shared supervisor of spawned worker processes: results, a dying child, the deadline."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest

from emrops.children import supervise
from emrops.errors import EmropsError


def _report(index: int, out: Any) -> None:
    out.put(("ready", index, None))
    out.put(("result", index, index * 10))


def _die(index: int, out: Any) -> None:
    os._exit(3)


def _hang(index: int, out: Any) -> None:
    time.sleep(30)


def _run(target: Any, n: int, deadline_s: float) -> tuple[dict[int, Any], list[Any]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(k, out), daemon=True) for k in range(n)]
    got: dict[int, Any] = {}

    def on_message(kind: str, index: int, payload: Any) -> bool:
        if kind == "result":
            got[index] = payload
            return True
        return False

    try:
        supervise(
            procs,
            out,
            deadline=time.monotonic() + deadline_s,
            on_message=on_message,
            failure=EmropsError,
            child="test process",
        )
    finally:
        alive = [p for p in procs if p.is_alive()]
    return got, alive


def test_every_child_result_is_handed_over_and_children_are_joined() -> None:
    got, alive = _run(_report, 3, 60)
    assert got == {0: 0, 1: 10, 2: 20}
    assert alive == []


def test_a_dying_child_fails_the_run() -> None:
    with pytest.raises(EmropsError, match=r"^a test process died \(exit 3\)$"):
        _run(_die, 2, 60)


def test_the_deadline_fails_the_run_and_stops_the_children() -> None:
    started = time.monotonic()
    with pytest.raises(EmropsError, match=r"^test processes did not finish in time$"):
        _run(_hang, 2, 1.0)
    assert time.monotonic() - started < 20  # terminated, not waited out (they sleep 30 s)
