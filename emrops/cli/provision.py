"""``emrops provision``: Bicep → Azure with a Terraform-like plan/apply.

Exit codes: 0 ok (plan: no changes), 1 error (incl. a stale plan), 2 usage,
3 lint found failed checks, 4 plan found changes pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emrops.cli.app import (
    JsonOpt,
    YesOpt,
    confirm,
    err_console,
    make_app,
    out_console,
    output_file,
    print_json,
    settings,
)
from emrops.errors import ChangesPending, CheckFailed
from emrops.provision import apply as applying
from emrops.provision import arm, build, lint, plan, render

app = make_app("Provision EMRsim on Azure from Bicep (render, lint, build, plan, apply...).")

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: staging or production.")]
TemplateOpt = Annotated[
    Path | None,
    typer.Option("--template", help="Compiled ARM JSON to use instead of running `bicep build`."),
]
_WORDS = {
    "Create": "to create",
    "Modify": "to modify",
    "Delete": "to delete",
    "Deploy": "to deploy",
    "NoChange": "unchanged",
    "Ignore": "ignored",
    "NoEffect": "without effect",
    "Unsupported": "what-if cannot predict",
}
_SYMBOL = {
    "Create": "+",
    "Delete": "-",
    "Modify": "~",
    "Deploy": "!",
    "NoChange": "=",
    "Ignore": "*",
    "NoEffect": "=",
    "Unsupported": "?",
}


@app.command("render")
def render_cmd(ctx: typer.Context, env: EnvOpt, json_out: JsonOpt = False) -> None:
    """Write the ARM parameters file for ENV and print the effective parameters (secrets masked).

    Example: emrops provision render --env staging
    """
    result = render.render(settings(ctx), env)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"{result.environment}: {result.resource_group} ({result.location})")
    for col in ("parameter", "value", "source"):
        table.add_column(col)
    for p in result.parameters:
        table.add_row(p.name, str(p.value), p.source)
    out_console.print(table)
    err_console.print(f"wrote {result.parameters_file}")


@app.command("lint")
def lint_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Parse every .bicep file (pycep) and run checkov's Bicep checks; exit 3 on a failed check.

    A check may be suppressed in the template with `#checkov:skip=CKV_ID:reason`;
    a suppression without a reason counts as failed. Example: emrops provision lint
    """
    result = lint.lint(settings(ctx))
    if json_out:
        print_json({**result.__dict__, "ok": result.ok})
    else:
        table = Table(title=f"checkov on {result.folder}: {result.passed} passed")
        for col in ("result", "check", "resource", "file", "reason"):
            table.add_column(col)
        for f in result.failed:
            table.add_row("FAILED", f.check_id, f.resource, f.file, f.name)
        for f in result.unexplained:
            table.add_row(
                "NO REASON", f.check_id, f.resource, f.file, "suppressed without a reason"
            )
        for f in result.suppressed:
            table.add_row("suppressed", f.check_id, f.resource, f.file, f.reason or "")
        out_console.print(table)
    if not result.ok:
        bad = len(result.failed) + len(result.unexplained)
        raise CheckFailed(
            f"lint: {bad} check(s) failed in {len(result.files)} Bicep file(s)",
            hint="fix them, or suppress with `#checkov:skip=CKV_ID:why` in the resource",
        )


@app.command("build")
def build_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Compile main.bicep to ARM JSON with the bicep CLI (PATH, ~/.azure/bin or EMROPS_BICEP).

    Example: EMROPS_BICEP=/opt/bicep emrops provision build
    """
    result = build.build(settings(ctx))
    if json_out:
        print_json(result)
        return
    out_console.print(
        f"{result.output} ({result.resources} resources, sha256 {result.sha256[:12]})"
    )


def _print_plan(p: plan.Plan) -> None:
    table = Table(title=f"{p.environment}: {p.resource_group} ({p.deployment_name})")
    for col in ("", "change", "type", "name", "properties"):
        table.add_column(col)
    for c in p.changes:
        props = ", ".join(f"{x.change} {x.path}" for x in c.properties) or c.reason
        table.add_row(_SYMBOL.get(c.change, "?"), c.change, c.resource_type, c.name, props)
    out_console.print(table)
    counts = ", ".join(f"{n} {_WORDS.get(k, k)}" for k, n in sorted(p.summary.items()))
    out_console.print(f"Resource changes: {counts or 'none'}. ({p.filtered} noise filtered)")


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Plan file to write.", dir_okay=False, callback=output_file),
    ] = None,
    template: TemplateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Preview the deployment with ARM what-if and save a plan; exit 4 when changes are pending.

    Example: emrops provision plan --env staging --out staging.plan
    """
    cfg = settings(ctx)
    result, _ = plan.make_plan(cfg, env, template, arm.connect(cfg))
    path = out or plan.default_plan_path(cfg, result.environment)
    plan.save_plan(result, path)
    if json_out:
        print_json({**result.to_json(), "plan_file": str(path)})
    else:
        _print_plan(result)
        err_console.print(f"plan saved to {path}")
    if result.pending:
        raise ChangesPending(
            _pending_message(result),
            hint=f"emrops provision apply --env {result.environment} --plan {path}"
            + (
                " (after reviewing what what-if cannot predict: it may change nothing or more)"
                if result.unpredicted
                else ""
            ),
        )


def _pending_message(p: plan.Plan) -> str:
    """Exit 4's message: what-if's unpredicted resources are not called changes."""
    known = p.pending - p.unpredicted
    if not p.unpredicted:
        return f"{known} change(s) pending in {p.environment}"
    unknown = f"{p.unpredicted} resource(s) what-if cannot predict"
    if not known:
        return f"no predicted changes in {p.environment}, but {unknown}"
    return f"{known} change(s) pending in {p.environment}, and {unknown}"


@app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Apply this saved plan (no prompt).")
    ] = None,
    template: TemplateOpt = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Deploy ENV (Incremental), showing each operation live; save outputs.

    With --plan, a plan whose template or parameters changed since is refused (exit 1), and
    what-if runs again: when the live state drifted from the saved plan, apply refuses with
    exit 4 and a summary of the differences.
    Without it, what-if runs first and you are asked to confirm (or pass --yes).
    Example: emrops provision apply --env staging --plan staging.plan
    """
    cfg = settings(ctx)
    clients = arm.connect(cfg)
    if plan_file is not None:
        saved = plan.load_plan(plan_file)
        inputs = applying.inputs_for_plan(cfg, saved, env, template)
        applying.check_fresh(saved, inputs)
        applying.check_no_drift(clients, saved, inputs)
        name = saved.deployment_name
    else:
        fresh, inputs = plan.make_plan(cfg, env, template, clients)
        if not json_out:
            _print_plan(fresh)
        confirm(f"Apply {fresh.pending} change(s) to {fresh.environment}?", yes)
        name = fresh.deployment_name
    seen: dict[str, str] = {}

    def progress(ops: list[applying.OperationStatus]) -> None:
        for op in ops:
            if seen.get(op.resource) != op.state:
                seen[op.resource] = op.state
                err_console.print(f"  {op.state:<10} {op.operation:<8} {op.resource}")

    result = applying.deploy(cfg, clients, inputs, name, progress=progress)
    if json_out:
        print_json(result)
        return
    err_console.print(f"{result.deployment_name}: {result.state} in {result.duration_s:.1f}s")
    for key, value in result.outputs.items():
        out_console.print(f"{key} = {value}")


@app.command("outputs")
def outputs_cmd(ctx: typer.Context, env: EnvOpt, json_out: JsonOpt = False) -> None:
    """Print the outputs saved by the last apply of ENV.

    Example: emrops provision outputs --env production --json
    """
    data = applying.read_outputs(settings(ctx), env)
    if json_out:
        print_json(data)
        return
    for key, value in data["outputs"].items():
        out_console.print(f"{key} = {value}")


@app.command("destroy")
def destroy_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete ENV's resource group and everything in it (asks first; --yes for CI).

    Example: emrops provision destroy --env staging --yes
    """
    cfg = settings(ctx)
    clients = arm.connect(cfg)
    target = applying.plan_destroy(cfg, clients, env)
    if not json_out:
        state = "" if target.exists else " (does not exist)"
        err_console.print(f"resource group {target.resource_group}{state}:")
        for name in target.resources:
            err_console.print(f"  - {name}")
    if dry_run:
        if json_out:
            print_json({**target.__dict__, "deleted": False})
        return
    confirm(
        f"Delete resource group {target.resource_group} and its {len(target.resources)} "
        "resource(s)?",
        yes,
    )
    applying.destroy(cfg, clients, target)
    if json_out:
        print_json({**target.__dict__, "deleted": target.exists})
    else:
        err_console.print(f"deleted {target.resource_group}" if target.exists else "nothing to do")


@app.command("db-role")
def db_role_cmd(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(help="Role of the app identity (output appIdentityName).")],
    db: Annotated[
        str | None, typer.Option("--db", help="PostgreSQL URL (default: db_url), e.g. ?auth=azure.")
    ] = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL that creates the role.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the managed identity's database role (exit 3 naming what is missing), or print
    the SQL the Entra ID administrator runs to create it with --sql.

    Example: emrops provision db-role emrsim-production-app-id --db "postgresql+psycopg://
    emrsim-db-admins@HOST/emrsim?auth=azure"
    """
    from dataclasses import asdict

    from emrops.provision import dbrole

    if sql:
        typer.echo(dbrole.grant_sql(role), nl=False)
        return
    result = dbrole.check_role(db or settings(ctx, db_url=db).db_url, role)
    if json_out:
        print_json({**asdict(result), "ok": result.ok})
    elif result.ok:
        err_console.print(f"role {role} may log in and use database {result.database}")
    if not result.ok:
        raise CheckFailed(
            f"role {role} is not ready: " + "; ".join(result.missing),
            hint=f"run `emrops provision db-role {role} --sql` and apply it as the Entra ID admin",
        )
