"""The probe's verdict: a client still reconnecting at the end is `reconnecting`, its missing
messages pending, not lost; a connected client's missing messages are lost."""

from __future__ import annotations

from emrops.sockets.probe import ProbeOptions, _Client, _report, _Writer


def _client(index: int, seen: set[int], online: bool) -> _Client:
    client = _Client(index, "s1", "ws://x")
    for mid in sorted(seen):
        client.on_message(mid)
    client.online = online
    return client


def test_reconnecting_client_is_not_lost_connected_one_is() -> None:
    clients = [
        _client(0, {1, 2, 3, 4}, online=True),
        _client(1, {1, 2}, online=False),  # mid-reconnect: 3 and 4 not delivered yet
        _client(2, {1, 2, 3}, online=True),  # resumed and still misses 4: lost
    ]
    report = _report(
        ProbeOptions(url="http://x"), clients, {"s1": [1, 2, 3, 4]}, _Writer(), [], 1, 1.0
    )
    rows = {r["client"]: r for r in report["clients"]}
    assert rows[1]["state"] == "reconnecting"
    assert (rows[1]["lost"], rows[1]["reconnecting_missing"]) == (0, 2)
    assert rows[2]["state"] == "connected"
    assert (rows[2]["lost"], rows[2]["lost_ids"]) == (1, [4])
    assert report["totals"]["lost"] == 1 and report["totals"]["reconnecting_missing"] == 2
    assert report["reconnecting_clients"] == 1
    assert report["passed"] is False  # the connected client's loss fails the probe


def test_only_reconnecting_clients_missing_messages_still_passes() -> None:
    clients = [_client(0, {1, 2}, online=True), _client(1, set(), online=False)]
    report = _report(ProbeOptions(url="http://x"), clients, {"s1": [1, 2]}, _Writer(), [], 1, 1.0)
    assert report["totals"]["lost"] == 0 and report["passed"] is True
    assert report["totals"]["reconnecting_missing"] == 2
