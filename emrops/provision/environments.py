"""Environments: ``environments/<env>.toml`` beside ``main.bicep``, validated on load.

An environment file has ``[azure]`` (location, resource_group), ``[parameters]`` (plain
Bicep parameter values), ``[secrets.<param>]`` (``env = "VAR"`` or ``key_vault = "<vault
resource id>"`` + ``secret = "<name>"``) and an optional ``[deploy]`` table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.config import Settings
from emrops.errors import UsageError
from emrops.resources import templates_dir

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SECTIONS = {"azure", "parameters", "secrets", "deploy"}
_AZURE_KEYS = {"location", "resource_group"}
_DEPLOY_KEYS = {"probe_window", "probe_interval", "ready_timeout", "site_name"}


@dataclass(frozen=True)
class SecretSource:
    """Where a secure parameter comes from: an environment variable or a Key Vault secret."""

    param: str
    env: str | None = None
    vault_id: str | None = None
    secret: str | None = None

    @property
    def description(self) -> str:
        if self.env:
            return f"env {self.env}"
        return f"Key Vault {self.vault_id} secret {self.secret}"


@dataclass(frozen=True)
class Environment:
    """One deployment environment (staging, production, ...)."""

    name: str
    path: Path
    location: str
    resource_group: str
    parameters: dict[str, Any]
    secrets: dict[str, SecretSource]
    deploy: dict[str, str] = field(default_factory=dict)


def bicep_dir(settings: Settings) -> Path:
    """The Bicep folder: ``provision.templates`` when set, else the bundled templates/bicep."""
    configured = settings.get("provision.templates")
    path = Path(configured) if configured else templates_dir() / "bicep"
    if not (path / "main.bicep").is_file():
        raise UsageError(
            f"no main.bicep in {path}",
            hint="set provision.templates (EMROPS_PROVISION_TEMPLATES) to your Bicep folder",
        )
    return path


def available(settings: Settings) -> list[str]:
    folder = bicep_dir(settings) / "environments"
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def load_environment(settings: Settings, name: str) -> Environment:
    """Read and check ``environments/<name>.toml``; UsageError (exit 2) on any problem."""
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(
            f"invalid environment name {name!r}",
            hint="use lowercase letters, digits and dashes, e.g. staging",
        )
    path = bicep_dir(settings) / "environments" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available(settings)) or "none"
        raise UsageError(
            f"unknown environment {name!r}: {path} does not exist",
            hint=f"use one of: {known}",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"environment file {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"environment file {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read environment file {path}: {exc.strerror}") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"environment file {path} is nested too deeply to read") from None
    return _parse(name, path, data, settings)


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{path}: [{key}] must be a table")
    return value


def _parse(name: str, path: Path, data: dict[str, Any], settings: Settings) -> Environment:
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise UsageError(
            f"{path}: unknown section(s) {', '.join(unknown)}",
            hint="allowed sections: " + ", ".join(sorted(_SECTIONS)),
        )
    azure = _table(data, "azure", path)
    bad = sorted(set(azure) - _AZURE_KEYS)
    if bad:
        raise UsageError(f"{path}: unknown key(s) in [azure]: {', '.join(bad)}")
    deploy = _table(data, "deploy", path)
    bad = sorted(set(deploy) - _DEPLOY_KEYS)
    if bad:
        raise UsageError(f"{path}: unknown key(s) in [deploy]: {', '.join(bad)}")
    parameters = _table(data, "parameters", path)
    secrets = {
        param: _secret(param, spec, path) for param, spec in _table(data, "secrets", path).items()
    }
    both = sorted(set(parameters) & set(secrets))
    if both:
        raise UsageError(f"{path}: {', '.join(both)} given both in [parameters] and [secrets]")
    prefix = settings.get("azure.resource_group_prefix") or "emrsim"
    location = azure.get("location") or settings.get("azure.location")
    group = azure.get("resource_group") or f"{prefix}-{name}-rg"
    for key, value in (("location", location), ("resource_group", group)):
        if not isinstance(value, str) or not value:
            raise UsageError(f"{path}: [azure] {key} must be a non-empty string")
    return Environment(
        name=name,
        path=path,
        location=location,
        resource_group=group,
        parameters=dict(parameters),
        secrets=secrets,
        deploy={k: str(v) for k, v in deploy.items()},
    )


def _secret(param: str, spec: Any, path: Path) -> SecretSource:
    where = f"{path}: [secrets.{param}]"
    if not isinstance(spec, dict):
        raise UsageError(
            f"{where} must be a table",
            hint='write env = "VAR" or key_vault = "<vault id>" and secret = "<name>"',
        )
    if set(spec) == {"env"} and isinstance(spec["env"], str) and spec["env"]:
        return SecretSource(param, env=spec["env"])
    if set(spec) == {"key_vault", "secret"} and all(
        isinstance(spec[k], str) and spec[k] for k in spec
    ):
        if "/providers/Microsoft.KeyVault/vaults/" not in spec["key_vault"]:
            raise UsageError(f"{where}: key_vault must be a Key Vault resource id")
        return SecretSource(param, vault_id=spec["key_vault"], secret=spec["secret"])
    raise UsageError(
        f"{where} needs either env, or key_vault and secret",
        hint="secrets never go into [parameters] or the rendered file",
    )
