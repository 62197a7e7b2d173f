"""Session 13: what-if change types, token expiry during long polls, swap conflicts.

ARM is the local fake server (tests/provision/fake_arm.py); where a test needs another
answer from it, the fake's prediction or handler is replaced for that test only.
"""

from __future__ import annotations

import json
from typing import Any

from tests.provision.fake_arm import FakeArm

RG = "emrsim-staging-rg"


def _predict(azure: FakeArm, change: Any) -> None:
    """What-if answers as the real fake does, with ``change(list)`` applied to its changes."""
    original = azure.what_if_changes

    def what_if_changes(rg: str, wanted: dict[str, dict[str, Any]]) -> list[dict]:
        return change(original(rg, wanted))

    azure.what_if_changes = what_if_changes  # type: ignore[method-assign]


def _plan(cli):
    result = cli("provision", "plan", "--env", "staging", "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def _applied(cli) -> None:
    assert cli("provision", "apply", "--env", "staging", "--yes").exit_code == 0


def test_unsupported_change_is_not_reported_as_in_sync(cli, azure: FakeArm) -> None:
    """what-if says Unsupported when it cannot predict a resource (e.g. a nested template it
    cannot expand): the plan cannot promise 'no changes', so exit 4 with the reason."""
    _applied(cli)
    reason = "The resource cannot be evaluated: unresolved reference in a nested deployment."

    def unsupported(changes: list[dict]) -> list[dict]:
        first = changes[0]
        changes[0] = {
            "resourceId": first["resourceId"],
            "changeType": "Unsupported",
            "unsupportedReason": reason,
        }
        return changes

    _predict(azure, unsupported)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    assert plan["pending"] == 1 and plan["unpredicted"] == 1
    first = plan["changes"][0]
    assert first["change"] == "Unsupported" and first["reason"] == reason
    assert plan["summary"]["Unsupported"] == 1


def test_unknown_change_type_is_unpredicted_and_resource_level_noeffect_is_none(
    cli, azure: FakeArm
) -> None:
    _applied(cli)

    def retype(changes: list[dict]) -> list[dict]:
        changes[0]["changeType"] = "Replace"  # a type a future API version may add
        changes[0]["delta"] = []
        changes[1]["changeType"] = "NoEffect"
        changes[2]["changeType"] = "ignore"  # casing is not trusted
        return changes

    _predict(azure, retype)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    assert plan["pending"] == 1 and plan["unpredicted"] == 1
    kinds = {c["change"] for c in plan["changes"]}
    assert {"Replace", "NoEffect", "Ignore"} <= kinds
    replaced = next(c for c in plan["changes"] if c["change"] == "Replace")
    assert "'Replace' is not known" in replaced["reason"]


def test_only_noeffect_and_ignore_is_in_sync(cli, azure: FakeArm) -> None:
    _applied(cli)

    def quiet(changes: list[dict]) -> list[dict]:
        for i, change in enumerate(changes):
            change["changeType"] = "NoEffect" if i % 2 else "Ignore"
        return changes

    _predict(azure, quiet)
    result, plan = _plan(cli)
    assert result.exit_code == 0, result.stderr
    assert plan["pending"] == 0 and plan["unpredicted"] == 0


def test_extensible_resources_without_resource_id_stay_apart(cli, azure: FakeArm) -> None:
    """Bicep extension resources (e.g. Microsoft Graph) come back without resourceId, only a
    symbolic name: each is its own change (they were merged under an empty id, name '')."""
    _applied(cli)

    def extension(changes: list[dict]) -> list[dict]:
        for name in ("appGroup", "appRegistration"):
            changes.append(
                {
                    "symbolicName": name,
                    "resourceType": "Microsoft.Graph/groups",
                    "changeType": "Create",
                }
            )
        return changes

    _predict(azure, extension)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    created = [c for c in plan["changes"] if c["change"] == "Create"]
    assert sorted(c["name"] for c in created) == ["symbolic:appGroup", "symbolic:appRegistration"]
    assert {c["resource_type"] for c in created} == {"Microsoft.Graph/groups"}
    assert len({c["resource_id"] for c in created}) == 2
