"""The stale-lock takeover race on the Azure lease (issue #15 item 8), reproduced and closed.

The race: run A holds the store lock (a 60 s blob lease, renewed in the background) and stalls
(a long GC pause, a suspended VM, a network partition) past the lease's expiry. Run B finds the
lease expired, takes the lock over ("taking over a stale lock") and goes on. A wakes up: its
renewal fails, which it only logged, and it went on writing and deleting: two runs both
believed they held the lock. Now every change to the store under the lock renews the lease
first, so A stops with exit 75 and writes nothing. Expiry is simulated by breaking the lease
with a zero break period, which is exactly the state an expired lease is in for a taker.
"""

from __future__ import annotations

import threading

import pytest
from azure.storage.blob import BlobLeaseClient

from emrops.backup.stores import open_store
from emrops.config import load_settings
from emrops.errors import Busy


def test_a_stalled_holder_cannot_write_after_a_takeover(azure_store: str) -> None:
    settings = load_settings()
    a = open_store(azure_store, settings)
    b = open_store(azure_store, settings)
    step = threading.Barrier(2, timeout=30)
    outcome: dict[str, object] = {}
    warnings: list[str] = []

    def run_a() -> None:
        with a.lock("backup rotate"):
            a.write_bytes("20260101T000000.000Z-aaaaaa/before.txt", b"A, while it held the lock")
            step.wait()  # 1: A holds the lock, then stalls
            step.wait()  # 2: A's lease expired and B took the lock over
            try:
                a.write_bytes("20260101T000000.000Z-aaaaaa/after.txt", b"A, after the takeover")
                outcome["a"] = "wrote"
            except Busy as exc:
                outcome["a"] = exc
            try:
                a.delete("20260101T000000.000Z-bbbbbb/b.txt")
                outcome["a_delete"] = "deleted"
            except Busy as exc:
                outcome["a_delete"] = exc
            step.wait()  # 3: A is done

    thread = threading.Thread(target=run_a)
    thread.start()
    step.wait()  # 1
    lock_blob = a.container.get_blob_client(a._name(".lock"))  # type: ignore[attr-defined]
    BlobLeaseClient(lock_blob).break_lease(lease_break_period=0)  # the lease expires
    with b.lock("backup run", warnings.append):
        b.write_bytes("20260101T000000.000Z-bbbbbb/b.txt", b"B holds the lock now")
        step.wait()  # 2
        step.wait()  # 3
        assert b.read_bytes("20260101T000000.000Z-bbbbbb/b.txt") == b"B holds the lock now"
    thread.join()
    assert any("taking over a stale lock" in w and "backup rotate" in w for w in warnings)
    assert isinstance(outcome["a"], Busy), outcome
    assert "lost the lock" in str(outcome["a"]) and outcome["a"].exit_code == 75
    assert isinstance(outcome["a_delete"], Busy), outcome
    assert not b.exists("20260101T000000.000Z-aaaaaa/after.txt")
    assert b.exists("20260101T000000.000Z-bbbbbb/b.txt")


@pytest.mark.slow
def test_takeover_race_many_times(azure_store: str) -> None:
    for _ in range(20):
        test_a_stalled_holder_cannot_write_after_a_takeover(azure_store)
