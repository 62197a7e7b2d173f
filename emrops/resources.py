"""The one place that finds ``templates/`` and ``checklists/``.

From a source checkout they sit at the repository root; after ``pip install .``
they are installed inside the package as ``emrops/templates`` and
``emrops/checklists`` (see setup.py).
"""

from __future__ import annotations

from pathlib import Path

from emrops.errors import EmropsError

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Path of a bundled resource folder: 'templates' or 'checklists'."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise EmropsError(
        f"bundled folder {name!r} not found next to the emrops package",
        hint="reinstall emrops with `pip install .` from a complete checkout",
    )


def templates_dir() -> Path:
    return resource_dir("templates")


def checklists_dir() -> Path:
    return resource_dir("checklists")
