"""Production Azure as its guidance sets it up: CanNotDelete locks on the data resources
(lockDataResources) make ARM refuse a resource-group delete with 409 ScopeLocked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.provision.fake_arm import FakeArm

RG = "emrsim-staging-rg"
LOCKED = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/emrsim-staging-rg/"
    "providers/Microsoft.DBforPostgreSQL/flexibleServers/emrsim-staging-pg"
)


def _lock_group(azure: FakeArm) -> None:
    """ARM's answer to deleting a group holding a CanNotDelete lock (at the HTTP boundary)."""
    base: Any = azure.server.RequestHandlerClass

    class Locked(base):  # type: ignore[misc, valid-type]
        def do_DELETE(self) -> None:  # noqa: N802
            if self.path.split("?")[0].rstrip("/").lower().endswith(f"/resourcegroups/{RG}"):
                self._body()
                self._error(
                    409,
                    "ScopeLocked",
                    f"The scope '{LOCKED}' cannot perform delete operation because following "
                    f"scope(s) are locked: '{LOCKED}'. Please remove the lock and try again.",
                )
                return
            super().do_DELETE()

    azure.server.RequestHandlerClass = Locked


def test_destroy_of_a_locked_environment_fails_and_says_why(cli, azure: FakeArm) -> None:
    assert cli("provision", "apply", "--env", "staging", "--yes").exit_code == 0
    _lock_group(azure)
    result = cli("provision", "destroy", "--env", "staging", "--yes", "--json")
    assert result.exit_code == 1
    assert '"deleted": true' not in result.stdout
    assert "ScopeLocked" in result.stderr
    assert "CanNotDelete lock" in result.stderr and "az lock delete" in result.stderr
    assert "unexpected" not in result.stderr
    assert RG in azure.groups
    # the outputs stay: the environment still exists
    assert json.loads(Path(".emrops/outputs/staging.json").read_text())
