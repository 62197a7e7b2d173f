"""Fixtures for provisioning tests: the local fake ARM server and the stand-in bicep CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emrops.config import load_settings
from emrops.provision.environments import load_environment
from emrops.provision.evaluate import Evaluation, evaluate
from emrops.resources import templates_dir
from tests.provision.fake_arm import TOKEN, FakeArm

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "S3cret-Pg-Passw0rd"
BACKUP_KEY = "b4ckup-k3y-material"
SIM_TOKEN = "s1m-t0ken-for-the-app"


@pytest.fixture
def fake_arm() -> Iterator[FakeArm]:
    arm = FakeArm().start()
    try:
        yield arm
    finally:
        arm.stop()


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch, fake_arm: FakeArm) -> FakeArm:
    """Point emrops at the fake ARM server with a static token; bicep is the stand-in."""
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", fake_arm.subscription)
    monkeypatch.setenv("EMROPS_AZURE_ARM_ENDPOINT", fake_arm.url)
    monkeypatch.setenv("EMROPS_AZURE_APP_ENDPOINT", fake_arm.url)
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("EMROPS_POSTGRES_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("EMROPS_BACKUP_ENCRYPTION_KEY", BACKUP_KEY)
    monkeypatch.setenv("EMROPS_SIM_TOKEN", SIM_TOKEN)
    monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ['PATH']}")
    return fake_arm


@pytest.fixture(autouse=True)
def _no_ambient_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No subscription or bicep from the developer's machine leaks into a test."""
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.setenv("HOME", str(Path.cwd() / "home"))


# -- the bundled Bicep evaluated per environment (test_templates*, test_session14)
BICEP = templates_dir() / "bicep"
ENVS = ("staging", "production")
SECRETS = {
    "postgresAdminPassword": "evaluated-admin-password",
    "backupEncryptionKey": "AGE-SECRET-KEY-EVALUATED",
    "simToken": "evaluated-sim-token",
}


def evaluate_env(env: str) -> Evaluation:
    """The bundled templates evaluated with ENV's parameter values (stand-in secrets)."""
    environment = load_environment(load_settings(), env)
    params: dict[str, Any] = dict(environment.parameters)
    params.update({name: SECRETS[name] for name in environment.secrets})
    return evaluate(BICEP / "main.bicep", params)


@pytest.fixture(scope="module", params=ENVS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, Evaluation]:
    return request.param, evaluate_env(request.param)


@pytest.fixture(scope="module")
def production() -> Evaluation:
    return evaluate_env("production")


@pytest.fixture(scope="module")
def staging() -> Evaluation:
    return evaluate_env("staging")
