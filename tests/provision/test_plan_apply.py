"""plan/apply/outputs/destroy: the real Azure SDK clients against the local fake ARM server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emrops.resources import templates_dir
from tests.provision.conftest import BACKUP_KEY, FIXTURES, PASSWORD

RG = "emrsim-staging-rg"
# one flat resource per type main.bicep deploys (the stand-in for bicep build output)
N = len(json.loads((FIXTURES / "main.json").read_text())["resources"])


def _plan(cli, *extra: str):
    return cli("provision", "plan", "--env", "staging", "--json", *extra)


def test_plan_apply_outputs_cycle(cli, azure, tmp_path):
    first = _plan(cli)
    assert first.exit_code == 4, first.stderr  # changes pending
    plan = json.loads(first.stdout)
    assert plan["schema"] == "emrops.plan/1"
    # the missing resource group is planned as a create (not created): N + 1 changes
    assert plan["summary"] == {"Create": N + 1} and plan["pending"] == N + 1
    names = [c["name"] for c in plan["changes"]]
    assert names[0] == RG
    assert {
        "emrsim-staging-pg",
        "emrsim-staging-plan",
        "emrsim-staging",
        "emrsim-staging/staging",
    } <= set(names)
    assert plan["deployment_name"].startswith("emrops-staging-")
    plan_file = Path(plan["plan_file"])
    assert plan_file == tmp_path / ".emrops" / "plans" / "staging.plan.json"
    assert first.stderr.splitlines()[0] == f"Error: {N + 1} change(s) pending in staging"
    assert plan["changes"][0]["resource_type"] == "Microsoft.Resources/resourceGroups"
    assert RG not in azure.groups  # planning wrote nothing
    assert [m for m, _ in azure.requests if m not in ("GET", "POST")] == []

    applied = cli("provision", "apply", "--env", "staging", "--plan", str(plan_file), "--json")
    assert applied.exit_code == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["state"] == "Succeeded"
    assert result["deployment_name"] == plan["deployment_name"]
    assert result["outputs"]["siteName"] == "emrsim-staging"
    assert {op["state"] for op in result["operations"]} == {"Succeeded"}
    saved = json.loads((tmp_path / ".emrops" / "outputs" / "staging.json").read_text())
    assert saved["outputs"]["appHostName"] == "emrsim-staging.azurewebsites.net"
    # the ARM side received the secure values, the files never did
    assert len(azure.resources[RG]) == N
    for path in (plan_file, tmp_path / ".emrops" / "outputs" / "staging.json"):
        assert PASSWORD not in path.read_text() and BACKUP_KEY not in path.read_text()

    again = _plan(cli)
    assert again.exit_code == 0, again.stderr  # nothing to do
    data = json.loads(again.stdout)
    assert data["summary"] == {"NoChange": N} and data["filtered"] == N  # noise filtered

    outputs = cli("provision", "outputs", "--env", "staging", "--json")
    assert outputs.exit_code == 0
    assert json.loads(outputs.stdout)["outputs"]["stagingHostName"] == (
        "emrsim-staging-staging.azurewebsites.net"
    )


def test_modify_shows_property_changes(cli, azure, monkeypatch, tmp_path):
    folder = tmp_path / "bicep"
    shutil.copytree(templates_dir() / "bicep", folder)
    monkeypatch.setenv("EMROPS_PROVISION_TEMPLATES", str(folder))
    assert cli("provision", "apply", "--env", "staging", "--yes", "--json").exit_code == 0
    env_file = folder / "environments" / "staging.toml"
    env_file.write_text(
        env_file.read_text().replace("postgresStorageGb = 32", "postgresStorageGb = 64")
    )
    result = _plan(cli)
    assert result.exit_code == 4
    plan = json.loads(result.stdout)
    assert plan["summary"] == {"Modify": 1, "NoChange": N - 1}
    change = plan["changes"][0]
    assert change["name"] == "emrsim-staging-pg"
    assert change["properties"] == [
        {"path": "properties.storageSizeGB", "change": "Modify", "before": 32, "after": 64}
    ]


def test_plan_table_for_people(cli, azure):
    result = cli("provision", "plan", "--env", "staging")
    assert result.exit_code == 4
    assert f"Resource changes: {N + 1} to create." in result.stdout
    assert "Microsoft.Web/sites" in result.stdout
    assert "plan saved to" in result.stderr


def test_stale_plan_is_refused(cli, azure, monkeypatch, tmp_path):
    folder = tmp_path / "bicep"
    shutil.copytree(templates_dir() / "bicep", folder)
    monkeypatch.setenv("EMROPS_PROVISION_TEMPLATES", str(folder))
    plan = json.loads(_plan(cli, "--out", "staging.plan").stdout)
    env_file = folder / "environments" / "staging.toml"
    env_file.write_text(
        env_file.read_text().replace("appInstanceCount = 1", "appInstanceCount = 2")
    )
    result = cli("provision", "apply", "--env", "staging", "--plan", "staging.plan")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        "Error: stale plan: the template or parameters changed since the plan was made ("
    )
    assert lines[1] == "Try: run `emrops provision plan --env staging` again and review it"
    assert azure.count("PUT", "/deployments/") == 0
    assert plan["inputs_sha256"][:12] in lines[0]


def test_stale_plan_after_template_change(cli, azure, monkeypatch, tmp_path):
    template = tmp_path / "main.json"
    shutil.copy(FIXTURES / "main.json", template)
    assert _plan(cli, "--template", str(template), "--out", "p.json").exit_code == 4
    data = json.loads(template.read_text())
    data["resources"][0]["properties"]["reserved"] = False
    template.write_text(json.dumps(data))
    result = cli("provision", "apply", "--env", "staging", "--plan", "p.json")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: stale plan")


def test_apply_without_plan_needs_confirmation(cli, azure):
    result = cli("provision", "apply", "--env", "staging")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-2] == (
        f"Error: Apply {N + 1} change(s) to staging: confirmation needed but stdin is not a "
        "terminal"
    )
    assert azure.count("PUT", "/deployments/") == 0


def test_what_if_error_in_http_200_is_an_error(cli, azure):
    azure.what_if_error = {
        "code": "InvalidTemplate",
        "message": "Deployment template validation failed: 'The resource 'x' is not defined'.",
        "details": [{"code": "ResourceNotFound", "message": "x"}],
    }
    result = _plan(cli)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "Error: what-if failed: InvalidTemplate: Deployment template validation failed: "
        "'The resource 'x' is not defined'.; ResourceNotFound: x"
    )
    assert lines[1] == "Try: fix the template or parameters"


def test_throttled_requests_are_retried(cli, azure):
    azure.throttle = {"/whatIf": 1, f"/resourcegroups/{RG}": 1}
    result = _plan(cli)
    assert result.exit_code == 4, result.stderr
    assert azure.count("POST", "/whatIf") == 2  # one 429, then the retry
    assert azure.throttle == {"/whatIf": 0, f"/resourcegroups/{RG}": 0}


def test_failed_deployment_names_the_resource(cli, azure):
    azure.fail_resource = {
        "name": "emrsim-staging-pg",
        "code": "InvalidParameterValue",
        "message": "Invalid value given for parameter storageSizeGB.",
    }
    result = cli("provision", "apply", "--env", "staging", "--yes")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith(("Error", "Try"))]
    assert errors[0].startswith("Error: deployment emrops-staging-")
    assert errors[0].endswith(
        " failed: Microsoft.DBforPostgreSQL/flexibleServers/emrsim-staging-pg: "
        "InvalidParameterValue: Invalid value given for parameter storageSizeGB."
    )
    assert errors[1].startswith("Try: fix the resource named above")
    assert "Failed" in result.stderr  # the live progress showed it
    assert not Path(".emrops/outputs/staging.json").exists()


def test_apply_progress_is_live_on_stderr(cli, azure):
    result = cli("provision", "apply", "--env", "staging", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "Running    Create   Microsoft.Web/sites/emrsim-staging" in result.stderr
    assert "Succeeded  Create   Microsoft.Web/sites/emrsim-staging" in result.stderr
    assert "siteName = emrsim-staging" in result.stdout


def test_missing_subscription(cli, azure, monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    result = _plan(cli)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: no Azure subscription configured",
        "Try: set AZURE_SUBSCRIPTION_ID or azure.subscription_id in emrops.toml",
    ]


def test_subscription_from_config_file(cli, azure, monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    (tmp_path / "emrops.toml").write_text(f'[azure]\nsubscription_id = "{azure.subscription}"\n')
    assert _plan(cli).exit_code == 4


def test_missing_secret_variable(cli, azure, monkeypatch):
    monkeypatch.delenv("EMROPS_POSTGRES_ADMIN_PASSWORD")
    result = _plan(cli)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: secure parameter postgresAdminPassword needs EMROPS_POSTGRES_ADMIN_PASSWORD "
        "in the environment"
    )


def test_bad_token_is_an_authentication_error(cli, azure, monkeypatch):
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", "wrong-token")
    result = _plan(cli)
    assert result.exit_code == 1
    assert "Azure authentication failed" in result.stderr.splitlines()[0]
    assert "wrong-token" not in result.stderr  # a secret, masked


def test_plain_http_endpoint_must_be_loopback(cli, azure, monkeypatch):
    monkeypatch.setenv("EMROPS_AZURE_ARM_ENDPOINT", "http://arm.example.org")
    result = _plan(cli)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: azure.arm_endpoint http://arm.example.org is plain http"
    )


def test_plan_for_other_environment_is_refused(cli, azure):
    _plan(cli, "--out", "staging.plan")
    result = cli("provision", "apply", "--env", "production", "--plan", "staging.plan")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: the plan is for environment 'staging', not 'production'"
    )


def test_outputs_before_apply(cli):
    result = cli("provision", "outputs", "--env", "staging")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1] == (
        "Try: run `emrops provision apply --env staging` first"
    )


def test_destroy_asks_then_deletes(cli, azure):
    assert cli("provision", "apply", "--env", "staging", "--yes").exit_code == 0
    assert Path(".emrops/outputs/staging.json").exists()
    refused = cli("provision", "destroy", "--env", "staging")
    assert refused.exit_code == 2
    assert "confirmation needed but stdin is not a terminal" in refused.stderr
    assert RG in azure.groups

    dry = cli("provision", "destroy", "--env", "staging", "--dry-run", "--json")
    assert dry.exit_code == 0
    listed = json.loads(dry.stdout)
    assert listed["exists"] is True and listed["deleted"] is False
    assert "Microsoft.Web/sites/emrsim-staging" in listed["resources"]

    done = cli("provision", "destroy", "--env", "staging", "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["deleted"] is True
    assert RG not in azure.groups
    assert not Path(".emrops/outputs/staging.json").exists()

    again = cli("provision", "destroy", "--env", "staging", "--yes", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["exists"] is False


@pytest.mark.parametrize("command", ["plan", "apply", "destroy", "outputs"])
def test_unknown_environment_everywhere(cli, azure, command):
    result = cli("provision", command, "--env", "qa")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown environment 'qa'")


def test_plan_from_template_file_then_apply(cli, azure, tmp_path):
    template = tmp_path / "main.json"
    shutil.copy(FIXTURES / "main.json", template)
    assert _plan(cli, "--template", str(template), "--out", "p.json").exit_code == 4
    result = cli("provision", "apply", "--env", "staging", "--plan", "p.json", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["siteName"] == "emrsim-staging"


def test_missing_template_file(cli, azure):
    result = _plan(cli, "--template", "nope.json")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot read template nope.json: ")


def test_noise_is_filtered_but_real_changes_stay():
    from emrops.provision.plan import normalise

    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/slots/staging"
    changes, filtered = normalise(
        [
            {
                "resourceId": rid,
                "changeType": "Modify",
                "delta": [
                    {"path": "properties.provisioningState", "propertyChangeType": "Modify"},
                    {"path": "properties.x", "propertyChangeType": "NoEffect"},
                    {
                        "path": "properties.serverFarmId",
                        "propertyChangeType": "Modify",
                        "after": "[reference('plan').id]",
                    },
                    {
                        "path": "properties.httpsOnly",
                        "propertyChangeType": "Modify",
                        "before": False,
                        "after": True,
                    },
                ],
            },
            {"resourceId": rid + "2", "changeType": "Modify", "delta": []},
        ]
    )
    assert filtered == 3
    assert [(c.change, c.resource_type, c.name) for c in changes] == [
        ("Modify", "Microsoft.Web/sites/slots", "app/staging"),
        ("NoChange", "Microsoft.Web/sites/slots", "app/staging2"),
    ]
    assert [p.path for p in changes[0].properties] == ["properties.httpsOnly"]


def test_plan_never_writes_even_when_the_group_exists(cli, azure):
    assert cli("provision", "apply", "--env", "staging", "--yes", "--json").exit_code == 0
    azure.requests.clear()
    result = _plan(cli)
    assert result.exit_code == 0, result.stderr
    writes = [(m, p) for m, p in azure.requests if m in ("PUT", "PATCH", "DELETE")]
    assert writes == []
    assert any(m == "POST" and p.endswith("/whatIf") for m, p in azure.requests)


def test_apply_refuses_a_plan_when_live_state_drifted(cli, azure):
    planned = _plan(cli, "--out", "staging.plan")
    assert planned.exit_code == 4
    # someone else deployed after the plan was reviewed
    assert cli("provision", "apply", "--env", "staging", "--yes", "--json").exit_code == 0
    azure.requests.clear()
    result = cli("provision", "apply", "--env", "staging", "--plan", "staging.plan")
    assert result.exit_code == 4, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        f"Error: the live state of {RG} drifted since the plan was made ({N + 1} resource(s)):"
    )
    assert f"  {RG}: planned Create, no longer predicted" in lines  # it exists now
    assert "  emrsim-staging-pg: planned Create, now NoChange" in lines
    assert lines[-1] == "Try: run `emrops provision plan --env staging` again and review it"
    assert [(m, p) for m, p in azure.requests if m in ("PUT", "PATCH", "DELETE")] == []


def test_apply_with_an_undrifted_plan_goes_ahead(cli, azure):
    assert _plan(cli, "--out", "staging.plan").exit_code == 4
    result = cli("provision", "apply", "--env", "staging", "--plan", "staging.plan", "--json")
    assert result.exit_code == 0, result.stderr
    assert RG in azure.groups and len(azure.resources[RG]) == N


def test_drift_names_property_differences():
    from emrops.provision.apply import drift
    from emrops.provision.plan import PropertyChange, ResourceChange

    old = [
        ResourceChange("/r/a", "T", "a", "Modify", [PropertyChange("properties.x", "Modify", 1, 2)])
    ]
    same = [
        ResourceChange("/r/a", "T", "a", "Modify", [PropertyChange("properties.x", "Modify", 1, 2)])
    ]
    moved = [
        ResourceChange("/r/a", "T", "a", "Modify", [PropertyChange("properties.x", "Modify", 3, 2)])
    ]
    assert drift(old, same) == []
    assert drift(old, moved) == ["a: Modify differs at properties.x"]
    assert drift(old, []) == ["a: planned Modify, no longer predicted"]
    assert drift([], old) == ["a: not in the plan, now Modify"]
