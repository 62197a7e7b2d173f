"""Compile Bicep to ARM JSON with the ``bicep`` CLI.

No Python or npm package ships the compiler, and nothing here pretends to compile
Bicep without it: when the binary is missing, :func:`find_bicep` says how to install it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops import atomic, secrets
from emrops.config import Settings
from emrops.errors import EmropsError, UsageError
from emrops.provision.environments import bicep_dir

INSTALL_HINT = (
    "install the Bicep CLI (`az bicep install` puts it in ~/.azure/bin, or download it from "
    "https://github.com/Azure/bicep/releases) or set EMROPS_BICEP to its path; "
    "or pass --template with compiled ARM JSON"
)


@dataclass
class BuildResult:
    bicep: str
    source: Path
    output: Path
    sha256: str
    resources: int


def find_bicep(settings: Settings) -> str:
    """EMROPS_BICEP / provision.bicep, then ``bicep`` on PATH, then ~/.azure/bin/bicep."""
    configured = settings.get("provision.bicep")
    if configured:
        found = shutil.which(configured)
        if found:
            return found
        raise EmropsError(f"bicep not found at {configured} (EMROPS_BICEP)", hint=INSTALL_HINT)
    found = shutil.which("bicep")
    if found:
        return found
    home = Path.home() / ".azure" / "bin" / "bicep"
    if home.is_file() and os.access(home, os.X_OK):
        return str(home)
    raise EmropsError("the bicep CLI is not installed", hint=INSTALL_HINT)


def build_path(settings: Settings) -> Path:
    return settings.state_dir / "build" / "main.json"


def build(settings: Settings, timeout: float = 300) -> BuildResult:
    """Run ``bicep build main.bicep --stdout`` and save the ARM JSON under the state dir."""
    bicep = find_bicep(settings)
    source = bicep_dir(settings) / "main.bicep"
    try:
        proc = subprocess.run(
            [bicep, "build", str(source), "--stdout"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except OSError as exc:
        raise EmropsError(f"cannot run {bicep}: {exc.strerror}", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise EmropsError(f"bicep build did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        detail = secrets.mask(proc.stderr.strip() or proc.stdout.strip()) or (
            f"exit code {proc.returncode}"
        )
        raise EmropsError(f"bicep build failed: {detail}", hint="fix the template and retry")
    template = parse_template(proc.stdout, f"output of {bicep} build")
    output = build_path(settings)
    text = json.dumps(template, indent=2) + "\n"
    atomic.write_text(output, text, mode=0o644)
    return BuildResult(
        bicep=bicep,
        source=source,
        output=output,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        resources=len(template.get("resources") or []),
    )


def parse_template(text: str, origin: str) -> dict[str, Any]:
    """An ARM template from JSON text; UsageError when it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{origin} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "resources" not in data or "$schema" not in data:
        raise UsageError(f"{origin} is not an ARM template (no $schema/resources)")
    return data


def load_template(settings: Settings, template: Path | None) -> tuple[dict[str, Any], str]:
    """The ARM template to deploy: ``template`` when given, else a fresh ``bicep build``."""
    if template is not None:
        try:
            text = template.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read template {template}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"template {template} is not UTF-8 text: {exc}") from None
        return parse_template(text, str(template)), str(template)
    result = build(settings)
    return parse_template(result.output.read_text(), str(result.output)), str(result.output)
