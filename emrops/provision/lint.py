"""Lint the Bicep templates: pycep-parser for syntax, checkov's Bicep framework for policy.

checkov pins old versions of packages emrops also uses, so it lives in its own virtual
environment (``make .venv-checkov/.installed``) and runs as a subprocess. A check may be
suppressed in the template with ``#checkov:skip=CKV_ID:reason``; a suppression without a
written reason counts as a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from emrops.config import Settings
from emrops.errors import CheckFailed, EmropsError
from emrops.provision.environments import bicep_dir
from emrops.provision.params import parse_bicep
from emrops.resources import templates_dir

_NO_REASON = "No comment provided"
INSTALL_HINT = (
    "run `make .venv-checkov/.installed` (python3 -m venv .venv-checkov && "
    ".venv-checkov/bin/pip install checkov), or set EMROPS_PROVISION_CHECKOV to a checkov binary"
)


@dataclass
class Finding:
    check_id: str
    name: str
    resource: str
    file: str
    lines: list[int]
    reason: str | None = None  # the written reason of a suppression


@dataclass
class LintResult:
    folder: Path
    files: list[str]
    checkov: str
    passed: int = 0
    failed: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)
    unexplained: list[Finding] = field(default_factory=list)  # suppressed without a reason

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unexplained


def find_checkov(settings: Settings) -> str:
    """The checkov executable: provision.checkov, ./.venv-checkov, the repo's, then PATH."""
    configured = settings.get("provision.checkov")
    if configured:
        path = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if not path:
            raise EmropsError(f"checkov not found at {configured}", hint=INSTALL_HINT)
        return path
    candidates = [Path.cwd() / ".venv-checkov/bin/checkov"]
    repo = Path(__file__).resolve().parents[2]
    candidates.append(repo / ".venv-checkov/bin/checkov")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("checkov")
    if found:
        return found
    raise EmropsError("checkov is not installed", hint=INSTALL_HINT)


def lint(settings: Settings, timeout: float = 600) -> LintResult:
    """Parse every .bicep file, then run checkov; the result says what failed."""
    folder = bicep_dir(settings)
    files = sorted(folder.rglob("*.bicep"))
    for path in files:
        parse_bicep(path)  # raises UsageError naming the file
    checkov = find_checkov(settings)
    env = dict(os.environ)
    # offline: no guideline download, no prisma mapping, no version check
    env.update(BC_SKIP_MAPPING="TRUE", CKV_NO_GUIDE="TRUE", ENABLE_UPDATE_CHECK="false")
    cmd = [checkov, "-d", str(folder), "--framework", "bicep", "-o", "json", "--compact"]
    cmd.append("--skip-download")
    # emrops's own checks for the PostgreSQL rules checkov lacks (templates/checkov)
    cmd += ["--external-checks-dir", str(templates_dir() / "checkov")]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except OSError as exc:
        raise EmropsError(f"cannot run {checkov}: {exc.strerror}", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise EmropsError(f"checkov did not finish within {timeout:.0f}s") from exc
    reports = _parse_report(proc.stdout, proc.stderr, proc.returncode)
    result = LintResult(folder, [str(p.relative_to(folder)) for p in files], checkov)
    for report in reports:
        results = report.get("results") or {}
        result.passed += len(results.get("passed_checks") or [])
        for item in results.get("failed_checks") or []:
            result.failed.append(_finding(item))
        for item in results.get("skipped_checks") or []:
            finding = _finding(item)
            reason = (item.get("check_result") or {}).get("suppress_comment") or ""
            finding.reason = reason.strip() or None
            if finding.reason in (None, _NO_REASON):
                finding.reason = None
                result.unexplained.append(finding)
            else:
                result.suppressed.append(finding)
        for parse_error in results.get("parsing_errors") or []:
            raise CheckFailed(f"checkov could not parse {parse_error}")
    return result


def _parse_report(stdout: str, stderr: str, code: int) -> list[dict]:
    text = stdout.strip()
    if not text:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise EmropsError(f"checkov produced no report: {last}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmropsError(f"checkov's report is not JSON: {text[:200]}") from exc
    if isinstance(data, dict) and "results" not in data and data.get("passed") == 0:
        return []  # checkov's empty summary: no resources found
    return data if isinstance(data, list) else [data]


def _finding(item: dict) -> Finding:
    return Finding(
        check_id=str(item.get("check_id")),
        name=str(item.get("check_name")),
        resource=str(item.get("resource")),
        file=str(item.get("file_path", "")).lstrip("/"),
        lines=list(item.get("file_line_range") or []),
    )
