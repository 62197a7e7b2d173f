"""Maps the top-level templates/ and checklists/ folders into the installed package.

Metadata lives in pyproject.toml; this file only adds the package-data mapping,
which pyproject's declarative form cannot combine with package discovery.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {"emrops.templates": "templates", "emrops.checklists": "checklists"}

setup(
    packages=find_packages(include=["emrops", "emrops.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    package_data={
        "emrops": ["py.typed", "db/migrations/script.py.mako"],
        "emrops.templates": ["**/*"],
        "emrops.checklists": ["**/*"],
    },
    include_package_data=False,
)
