"""Render an environment into an ARM parameters file with Jinja2.

The file holds plain values and Key Vault references only. Secure parameters sourced
from the environment are never written: :func:`secret_values` reads them in memory
when a deployment needs them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from emrops import atomic, secrets
from emrops.config import Settings
from emrops.errors import UsageError
from emrops.provision.environments import (
    Environment,
    SecretSource,
    bicep_dir,
    load_environment,
)
from emrops.provision.params import check_values, declared_parameters

TEMPLATE_NAME = "parameters.json.j2"


@dataclass
class EffectiveParameter:
    name: str
    value: Any  # secrets are shown as *** or as their source, never in clear
    source: str  # "file", "default (main.bicep)", "env VAR", "Key Vault ..."
    secure: bool


@dataclass
class RenderResult:
    environment: str
    resource_group: str
    location: str
    parameters_file: Path
    parameters: list[EffectiveParameter]


def parameters_path(settings: Settings, env: str) -> Path:
    return settings.state_dir / "params" / f"{env}.parameters.json"


def load_checked(settings: Settings, env_name: str) -> Environment:
    """Load an environment and check its values against main.bicep."""
    env = load_environment(settings, env_name)
    specs = declared_parameters(bicep_dir(settings) / "main.bicep")
    check_values(specs, env.parameters, set(env.secrets), str(env.path))
    return env


def render_text(settings: Settings, env: Environment) -> str:
    """The parameters file's text (JSON) for ``env``."""
    folder = bicep_dir(settings)
    jinja = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    jinja.policies["json.dumps_kwargs"] = {"sort_keys": True}
    try:
        template = jinja.get_template(TEMPLATE_NAME)
    except jinja2.TemplateNotFound as exc:
        raise UsageError(f"{folder / TEMPLATE_NAME} is missing") from exc
    refs = {name: src for name, src in sorted(env.secrets.items()) if src.vault_id is not None}
    text = template.render(
        env_name=env.name, parameters=dict(sorted(env.parameters.items())), key_vault_refs=refs
    )
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:  # a broken template, not bad input
        raise UsageError(f"{folder / TEMPLATE_NAME} rendered invalid JSON: {exc}") from exc
    return text


UNSET = "(unset)"
KEY_VAULT = "(Key Vault reference)"


def _secret_shown(src: SecretSource, environ: Mapping[str, str] | None = None) -> str:
    """``***`` only for a secret that is set; an unset one says so (apply would refuse it)."""
    if src.env is None:
        return KEY_VAULT
    environ = os.environ if environ is None else environ
    return secrets.MASK if environ.get(src.env) else UNSET


def render(settings: Settings, env_name: str) -> RenderResult:
    """Write ``<state_dir>/params/<env>.parameters.json`` and describe the effective values."""
    env = load_checked(settings, env_name)
    text = render_text(settings, env)
    path = parameters_path(settings, env.name)
    atomic.write_text(path, text, mode=0o600)
    specs = declared_parameters(bicep_dir(settings) / "main.bicep")
    effective: list[EffectiveParameter] = []
    for name, spec in sorted(specs.items()):
        if name in env.secrets:
            src = env.secrets[name]
            effective.append(EffectiveParameter(name, _secret_shown(src), src.description, True))
        elif name in env.parameters:
            effective.append(EffectiveParameter(name, env.parameters[name], "file", False))
        else:
            effective.append(
                EffectiveParameter(name, "(template default)", "default (main.bicep)", spec.secure)
            )
    return RenderResult(env.name, env.resource_group, env.location, path, effective)


def deployment_parameters(
    settings: Settings, env: Environment, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters as sent to ARM, the same without secret values for hashing and plans).

    Environment-sourced secrets are read here and registered for masking; a missing
    variable is a UsageError naming it.
    """
    environ = os.environ if environ is None else environ
    rendered = json.loads(render_text(settings, env))["parameters"]
    public = dict(rendered)
    full = dict(rendered)
    for name, src in sorted(env.secrets.items()):
        if src.env is None:
            continue
        value = environ.get(src.env)
        if not value:
            raise UsageError(
                f"secure parameter {name} needs {src.env} in the environment",
                hint=f"export {src.env}=... (or use a Key Vault reference in {env.path.name})",
            )
        secrets.register_secret(value)
        full[name] = {"value": value}
        public[name] = {"value": f"<from env {src.env}>"}
    return full, public
