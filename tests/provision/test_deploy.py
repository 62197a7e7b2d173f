"""deploy push/swap/rollback with two real sim server processes standing in for the slots.

The fake ARM server routes each slot's host name to the process bound to it, and a swap
flips that routing, so every probe hits what the swap produced.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.provision.fake_arm import FakeArm, Site, extract

RG = "emrsim-production-rg"
SITE = "emrsim-production"


@dataclass
class SimProcess:
    proc: subprocess.Popen
    url: str
    cwd: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file at the schema head, copied for each test (init-db runs once)."""
    from emrops.db.engine import create_engine
    from emrops.db.migrations_api import upgrade

    path = tmp_path_factory.mktemp("db") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


def spawn_sim(db_url: str, cwd: Path, code: str | None = None) -> SimProcess:
    """``emrops sim serve`` on a free port; ``code`` replaces ``-m emrops`` (package runs)."""
    port = free_port()
    args = ["sim", "serve", "--db", db_url, "--port", str(port)]
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "emrops", *args]
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    log = (cwd / "sim.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return SimProcess(proc, f"http://127.0.0.1:{port}", cwd)


def wait_up(*sims: SimProcess) -> None:
    deadline = time.monotonic() + 60
    for sim in sims:
        while True:
            if sim.proc.poll() is not None:
                raise RuntimeError(f"sim server exited: {(sim.cwd / 'sim.log').read_text()}")
            try:
                with urllib.request.urlopen(sim.url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("sim server did not start") from None
                time.sleep(0.1)


def start_sim(db_url: str, cwd: Path, code: str | None = None) -> SimProcess:
    sim = spawn_sim(db_url, cwd, code)
    wait_up(sim)
    return sim


@pytest.fixture
def slots(azure: FakeArm, tmp_path: Path, monkeypatch, template_db) -> Iterator[dict[str, object]]:
    """production and staging processes on one initialised SQLite database."""
    shutil.copy(template_db, tmp_path / "shared.db")
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = {
        "production": spawn_sim(db, tmp_path / "blue"),
        "staging": spawn_sim(db, tmp_path / "green"),
    }
    wait_up(*procs.values())
    site = azure.add_site(RG, SITE)
    site.backends.update({name: p.url for name, p in procs.items()})
    monkeypatch.setenv("EMROPS_DEPLOY_PROBE_WINDOW", "1s")
    monkeypatch.setenv("EMROPS_DEPLOY_PROBE_INTERVAL", "0.2s")
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "20s")
    state: dict[str, object] = {"db": db, "site": site, **procs}
    try:
        yield state
    finally:
        for value in list(state.values()):
            if isinstance(value, SimProcess):
                value.stop()


def _swap(cli, *extra: str):
    return cli("deploy", "swap", "--env", "production", "--site", SITE, *extra)


def test_healthy_swap(cli, azure, slots):
    blue, green = slots["production"], slots["staging"]
    result = _swap(cli, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["swapped"] is True and data["swapped_back"] is False
    assert data["schema_revision"] and data["probes"] >= 2
    site: Site = slots["site"]
    assert site.swaps == 1
    assert site.backends == {"production": green.url, "staging": blue.url}


def test_unready_staging_is_refused(cli, azure, slots, monkeypatch):
    slots["staging"].stop()
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "1s")
    result = _swap(cli)
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[-2] == (
        f"Error: swap refused: staging slot {SITE}-staging.azurewebsites.net is not ready: HTTP 503"
    )
    assert lines[-1] == "Try: fix staging (emrops deploy push) before swapping"
    assert slots["site"].swaps == 0
    assert azure.count("POST", "/slotsswap") == 0


def test_incompatible_schema_is_refused(cli, azure, slots, tmp_path, monkeypatch, template_db):
    # staging's code needs another schema revision than its database has: schema_mismatch
    other = tmp_path / "other.db"
    shutil.copy(template_db, other)
    empty = start_sim(f"sqlite:///{other}", tmp_path / "mismatch")
    with sqlite3.connect(other) as conn:  # the server refuses to start on a mismatch
        conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    slots["mismatch"] = empty
    slots["site"].backends["staging"] = empty.url
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "1s")
    result = _swap(cli)
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[-2].startswith(
        "Error: swap refused: staging's schema is incompatible with the shared database: "
    )
    assert lines[-2].endswith("schema revision 0000_older, this server needs 0001_initial")
    assert lines[-1].startswith("Try: migrate the database first (expand/contract)")
    assert slots["site"].swaps == 0


def test_failing_production_after_swap_is_swapped_back(cli, azure, slots):
    blue, green = slots["production"], slots["staging"]

    def break_new_production(site: Site) -> None:
        if site.swaps == 1:
            green.stop()  # the version just promoted dies

    azure.on_swap = break_new_production
    result = _swap(cli, "--json")
    assert result.exit_code == 3
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-2] == (
        "Error: production failed its health probe after the swap (HTTP 503); "
        "swapped back to the previous version"
    )
    site: Site = slots["site"]
    assert site.swaps == 2
    assert site.backends == {"production": blue.url, "staging": green.url}
    with urllib.request.urlopen(blue.url + "/ready", timeout=5) as response:
        assert response.status == 200


def test_swap_back_that_fails_says_production_runs_the_new_version(cli, azure, slots):
    """The worst case of a blue-green swap: the new version fails in production and ARM
    refuses the swap back. Before: the ARM error alone, with nothing saying production
    still served the failing version. Now that is the message, with the command to run."""
    green = slots["staging"]

    def break_new_production(site: Site) -> None:
        if site.swaps == 1:
            green.stop()

    azure.on_swap = break_new_production
    azure.refuse_swap = 2
    result = _swap(cli)
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "the swap back FAILED" in error and "production still runs the new version" in error
    assert "another operation is in progress" in error
    assert f"emrops deploy rollback --env production --site {SITE} --yes" in result.stderr
    assert slots["site"].swaps == 1
    assert slots["site"].backends["production"] == green.url  # as the message says


def test_swap_back_to_a_version_that_is_not_ready_either(cli, azure, slots, monkeypatch):
    """Both versions fail (a shared dependency is down): the swap back is not reported as a
    return to a working version."""
    blue, green = slots["production"], slots["staging"]
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "2s")

    def break_both(site: Site) -> None:
        if site.swaps == 1:
            green.stop()
            blue.stop()

    azure.on_swap = break_both
    result = _swap(cli)
    assert result.exit_code == 3, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "swapped back, but the previous version is not ready either" in error
    assert slots["site"].swaps == 2


def test_rollback_swaps_again(cli, azure, slots):
    blue, green = slots["production"], slots["staging"]
    assert _swap(cli).exit_code == 0
    refused = cli("deploy", "rollback", "--env", "production", "--site", SITE)
    assert refused.exit_code == 2
    result = cli("deploy", "rollback", "--env", "production", "--site", SITE, "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert slots["site"].swaps == 2
    assert slots["site"].backends == {"production": blue.url, "staging": green.url}


RUN_FROM_PACKAGE = """
import runpy, sys
sys.path.insert(0, {root!r})
import emrops
assert emrops.__file__.startswith({root!r}), emrops.__file__
runpy.run_module("emrops", run_name="__main__", alter_sys=True)
"""


def test_push_lands_a_package_that_staging_serves(cli, azure, slots, tmp_path):
    deployed: list[Path] = []

    def kudu(site: Site, slot: str, body: bytes) -> None:
        root = tmp_path / f"wwwroot-{slot}-{len(deployed)}"
        extract(body, root)
        new = start_sim(slots["db"], root, RUN_FROM_PACKAGE.format(root=str(root)))
        old = slots[slot]
        slots[f"{slot}-pushed"] = new
        site.backends[slot] = new.url
        old.stop()
        deployed.append(root)

    azure.on_zip_deploy = kudu
    result = cli("deploy", "push", "--env", "production", "--site", SITE, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["slot"] == "staging" and data["ready"] is True
    assert data["host"] == f"{SITE}-staging.azurewebsites.net"
    [(site_name, slot, body)] = azure.zip_deploys
    assert (site_name, slot) == (SITE, "staging")
    root = deployed[0]
    assert (root / "emrops" / "sim" / "server.py").is_file()
    requirements = (root / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert any(line.startswith("fastapi==") for line in pins)
    assert not [
        n
        for n in zipfile.ZipFile(Path(".emrops/deploy/production-sim.zip")).namelist()
        if "__pycache__" in n
    ]
    # the staging slot is now served by the process running from the deployed package
    assert slots["site"].backends["staging"] == slots["staging-pushed"].url
    with urllib.request.urlopen(slots["staging-pushed"].url + "/ready", timeout=5) as response:
        assert json.load(response)["status"] == "ready"


def test_push_that_never_gets_ready_exits_3(cli, azure, slots, monkeypatch):
    def kudu(site: Site, slot: str, body: bytes) -> None:
        slots[slot].stop()  # the new package does not start

    azure.on_zip_deploy = kudu
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "1s")
    result = cli("deploy", "push", "--env", "production", "--site", SITE)
    assert result.exit_code == 3
    assert f"{SITE}/staging did not become ready within 1s: HTTP 503" in result.stderr


def test_site_comes_from_saved_outputs(cli, azure, tmp_path):
    result = cli("deploy", "swap", "--env", "production")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("Error: which Web App? no siteName in ")


def test_bad_window_is_a_usage_error(cli, azure):
    azure.add_site(RG, SITE)
    result = _swap(cli, "--window", "soon")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert azure.count("POST", "/slotsswap") == 0


def test_refused_package_is_an_error(cli, azure, tmp_path):
    azure.add_site(RG, SITE)
    bogus = tmp_path / "not-a.zip"
    bogus.write_bytes(b"this is not a zip file")
    result = cli("deploy", "push", "--env", "production", "--site", SITE, "--package", str(bogus))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: zip deploy to {SITE}/staging was refused: HTTP 400 "
    )
    assert azure.zip_deploys == []


def test_unknown_site_is_reported(cli, azure):
    result = cli("deploy", "push", "--env", "production", "--site", "nope")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: reading nope/staging: not found: ResourceNotFound: "
    )


def test_timeout_bounds_the_wait_for_staging(cli, azure, slots):
    slots["staging"].stop()  # ready_timeout is 20 s in this fixture
    started = time.monotonic()
    result = _swap(cli, "--timeout", "1s")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert elapsed < 8, elapsed
    assert "Error: --timeout reached while waiting for staging" in result.stderr
    assert "nothing was swapped" in result.stderr
    assert slots["site"].swaps == 0


def test_timeout_during_the_window_swaps_back_and_never_cuts_a_swap(cli, azure, slots):
    blue, green = slots["production"], slots["staging"]
    started = time.monotonic()
    result = _swap(cli, "--window", "60s", "--timeout", "2s")
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert elapsed < 15, elapsed
    assert "--timeout reached after" in result.stderr and "swapped back" in result.stderr
    site: Site = slots["site"]
    assert site.swaps == 2  # the swap and the swap-back both completed
    assert site.backends == {"production": blue.url, "staging": green.url}


def test_ready_timeout_bounds_a_silent_staging(cli, azure, slots, blackhole, monkeypatch):
    # staging accepts connections and never answers: each /ready probe is cut to what is
    # left of deploy.ready_timeout, so the wait ends at 1 s, not after a 5 s probe timeout
    slots["site"].backends["staging"] = f"http://127.0.0.1:{blackhole}"
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "1s")
    started = time.monotonic()
    result = _swap(cli)
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert elapsed < 3.5, elapsed
    assert result.stderr.splitlines()[-2] == (
        f"Error: swap refused: staging slot {SITE}-staging.azurewebsites.net is not ready: "
        "ReadTimeout: no answer within 1.0s"
    )
    assert slots["site"].swaps == 0


def test_timeout_bounds_the_command_against_a_silent_staging(cli, azure, slots, blackhole):
    slots["site"].backends["staging"] = f"http://127.0.0.1:{blackhole}"  # ready_timeout 20 s
    started = time.monotonic()
    result = _swap(cli, "--timeout", "1s")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert elapsed < 3.5, elapsed
    assert "Error: --timeout reached while waiting for staging" in result.stderr
    assert "nothing was swapped" in result.stderr and slots["site"].swaps == 0


def test_window_bounds_the_watch_of_a_production_that_goes_silent(cli, azure, slots, blackhole):
    # staging is healthy, so the swap happens; right after it the new production accepts
    # connections and never answers. The unanswered probe is cut where --window ends (a
    # failure: swap back), not after its own 5 s timeout.
    blue = slots["production"]
    swapped = []

    def go_silent(site: Site) -> None:
        if site.swaps == 1:
            site.backends["production"] = f"http://127.0.0.1:{blackhole}"
            swapped.append(time.monotonic())

    azure.on_swap = go_silent
    try:
        result = _swap(cli, "--window", "1.5s")
    finally:
        azure.on_swap = None
    ended = time.monotonic()
    assert result.exit_code == 3, result.stderr
    assert swapped, "the swap never happened"
    watched = ended - swapped[0]
    assert watched < 1.5 + 2.0, watched  # window + the swap-back's round trips
    assert "swapped back" in result.stderr and "no answer within" in result.stderr
    site: Site = slots["site"]
    assert site.swaps == 2 and site.backends["production"] == blue.url
