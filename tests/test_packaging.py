"""A normal (non-editable) `pip install .` finds templates, checklists and migrations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_installed_package_finds_its_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # build from a clean copy so the test neither depends on nor litters the working tree
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "node_modules",
            "build",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".emrops",
            "var",
            "backups",
            ".hypothesis",
        ),
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.rmtree(src)  # prove nothing is read from the source tree
    probe = (
        "import emrops.resources as r, emrops.db.migrations_api as m;"
        "print(r.templates_dir()); print(r.checklists_dir()); print(m.head_revision())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out[0] == str(target / "emrops" / "templates")
    assert out[1] == str(target / "emrops" / "checklists")
    assert out[2] == "0001_initial"
    assert (target / "emrops" / "templates" / "README.md").is_file()
    assert (target / "emrops" / "db" / "migrations" / "script.py.mako").is_file()
