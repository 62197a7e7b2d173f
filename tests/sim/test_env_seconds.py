"""The sim server's seconds from the environment: a positive number, else a usage error
naming the variable (EMROPS_SIM_VITALS_INTERVAL, EMROPS_SIM_CLIENT_TIMEOUT)."""

from __future__ import annotations

import pytest

from emrops.errors import UsageError
from emrops.sim import server


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("EMROPS_SIM_VITALS_INTERVAL", server._vitals_interval),
        ("EMROPS_SIM_CLIENT_TIMEOUT", server._client_timeout),
    ],
)
@pytest.mark.parametrize("bad", ["0", "-1", "abc", "nan"])
def test_bad_seconds_are_named(monkeypatch, name: str, read, bad: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(name, bad)
    with pytest.raises(UsageError) as err:
        read()
    assert err.value.message == f"invalid {name}={bad!r}"


def test_good_seconds_and_the_client_timeout_bound(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EMROPS_SIM_VITALS_INTERVAL", "0.25")
    assert server._vitals_interval() == 0.25
    monkeypatch.setenv("EMROPS_SIM_CLIENT_TIMEOUT", "86400")
    with pytest.raises(UsageError):
        server._client_timeout()
    monkeypatch.delenv("EMROPS_SIM_CLIENT_TIMEOUT")
    assert server._client_timeout() == server.slowclients.DEFAULT_TIMEOUT_S
