"""Package the sim server for App Service: a zip of the ``emrops`` package plus a
``requirements.txt`` pinned to the versions installed here (App Service's Oryx build
runs ``pip install -r requirements.txt`` during the zip deploy).

The zip is deterministic (sorted entries, fixed timestamps): the same tree gives the
same sha256.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from emrops import atomic

_EPOCH = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass
class Package:
    path: Path
    sha256: str
    files: int
    size: int
    requirements: list[str]


def pinned_requirements(dist: str = "emrops") -> list[str]:
    """``name==version`` for every runtime requirement of ``dist`` and theirs, as installed."""
    seen: dict[str, str] = {}
    todo = [dist]
    while todo:
        name = todo.pop()
        try:
            info = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for req in info.requires or []:
            if ";" in req and "extra ==" in req.split(";", 1)[1]:
                continue  # optional extras (test, dev) are not deployed
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if not match:
                continue
            key = match.group(1).lower().replace("_", "-")
            if key in seen:
                continue
            try:
                seen[key] = metadata.version(key)
            except metadata.PackageNotFoundError:
                continue  # a platform-specific requirement not installed here
            todo.append(key)
    return [f"{name}=={version}" for name, version in sorted(seen.items())]


def _sources(root: Path) -> list[tuple[Path, str]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.is_dir() or path.suffix in _SKIP_SUFFIXES:
            continue
        if any(part in _SKIP_DIRS for part in rel.parts):
            continue
        out.append((path, rel.as_posix()))
    return out


def build_package(out: Path) -> Package:
    """Write the deployment zip to ``out`` and describe it."""
    import emrops

    root = Path(emrops.__file__).resolve().parent
    requirements = pinned_requirements()
    req_text = "# pinned by `emrops deploy push` from the installing environment\n"
    req_text += "\n".join(requirements) + "\n"
    entries = _sources(root)
    with (
        atomic.atomic_open(out, mode=0o644) as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for path, name in entries:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
        info = zipfile.ZipInfo("requirements.txt", _EPOCH)
        info.external_attr = 0o644 << 16
        archive.writestr(info, req_text)
    data = out.read_bytes()
    return Package(
        path=out,
        sha256=hashlib.sha256(data).hexdigest(),
        files=len(entries) + 1,
        size=len(data),
        requirements=requirements,
    )
