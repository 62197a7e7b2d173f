"""`sockets probe` against real sim servers, across real restarts."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.sim.conftest import (
    init_db,
    start_server,  # noqa: F401 - the fixture, for this module
)

HERE = Path(__file__).parent


@pytest.fixture
def restartable(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, str]]:
    """(base URL, restart command) of a server that the command really restarts."""
    db = init_db(sqlite_url)
    port = str(free_port())
    state = tmp_path / "server"
    state.mkdir()
    script = [sys.executable, str(HERE / "restartable.py")]
    subprocess.run([*script, "start", str(state), port, db], check=True, timeout=60)
    yield (
        f"http://127.0.0.1:{port}",
        shlex.join([*script, "restart", str(state), port, db]),
    )
    subprocess.run([*script, "stop", str(state), port, db], timeout=60)


def test_probe_without_restarts(cli, restartable: tuple[str, str], tmp_path: Path) -> None:
    url, _ = restartable
    result = cli(
        "sockets",
        "probe",
        "--url",
        url,
        "--clients",
        "6",
        "--sessions",
        "3",
        "--duration",
        "2s",
        "--rate",
        "10/s",
        "--out",
        "probe.json",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads((tmp_path / "probe.json").read_text())
    assert report["writer"]["posted"] == 20
    t = report["totals"]
    # 20 posts over 3 sessions, each a student message and a patient reply, seen by 2 clients
    assert t["expected"] == t["received"] == 2 * 2 * 20
    assert t["lost"] == t["duplicated"] == t["out_of_order"] == t["reconnects"] == 0
    assert report["passed"] is True


def test_summary_by_default_per_client_rows_with_verbose(cli, restartable: tuple[str, str]) -> None:
    url, _ = restartable
    args = ("sockets", "probe", "--url", url, "--clients", "3", "--sessions", "1")
    quick = ("--duration", "0.5s", "--rate", "4/s", "--settle", "3s")
    summary = cli(*args, *quick)
    assert summary.exit_code == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("messages expected ")
    verbose = cli(*args, *quick, "--verbose")
    assert verbose.exit_code == 0, verbose.stderr
    header, *rows = verbose.stdout.splitlines()[:4]
    assert header.split("\t")[:2] == ["client", "state"]
    assert [r.split("\t")[1] for r in rows] == ["connected"] * 3


def test_probe_across_real_restarts_loses_nothing(cli, restartable: tuple[str, str]) -> None:
    url, restart = restartable
    pid_file = Path(shlex.split(restart)[3]) / "server.pid"
    first_pid = pid_file.read_text()
    # a restart takes 2-6 s here (a new Python process); the first one starts after 1 s, so
    # the writer posts before, during and after it
    result = cli(
        "sockets",
        "probe",
        "--url",
        url,
        "--clients",
        "8",
        "--sessions",
        "4",
        "--duration",
        "9s",
        "--rate",
        "10/s",
        "--restart-cmd",
        restart,
        "--restart-every",
        "1s",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["restarts"] and all(r["exit_code"] == 0 for r in report["restarts"])
    assert pid_file.read_text() != first_pid  # a new server process answers now
    t = report["totals"]
    assert t["lost"] == 0 and t["duplicated"] == 0 and t["out_of_order"] == 0
    assert t["received"] == t["expected"] > 0
    # every client lost its socket, came back, and resumed (it got what was posted later)
    assert all(row["reconnects"] >= 1 for row in report["clients"])
    assert report["writer"]["refused"] + report["writer"]["failed"] > 0  # posts hit the outage
    assert 0 < report["reconnect_time"]["p50_s"] <= report["reconnect_time"]["max_s"] < 30


def test_failing_restart_command_is_an_error(cli, restartable: tuple[str, str]) -> None:
    url, _ = restartable
    result = cli(
        "sockets",
        "probe",
        "--url",
        url,
        "--clients",
        "2",
        "--duration",
        "1.5s",
        "--restart-cmd",
        "false",
        "--restart-every",
        "1s",
    )
    assert result.exit_code == 1
    assert "Error: --restart-cmd failed 1 time(s) (exit 1)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--restart-cmd", "no-such-program --now", "--restart-every", "5s"],
            "Error: --restart-cmd: 'no-such-program' not found or not executable",
        ),
        (["--restart-cmd", "true"], "--restart-cmd and --restart-every go together"),
        (["--restart-cmd", "'unbalanced", "--restart-every", "5s"], "cannot parse --restart-cmd"),
        (["--clients", "0"], "--clients must be at least 1"),
        (["--rate", "0/s"], "invalid rate"),
    ],
)
def test_bad_input_exits_2(cli, args: list[str], message: str) -> None:
    result = cli("sockets", "probe", "--url", "http://127.0.0.1:9", "--duration", "1s", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr


def test_unreachable_server(cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("sockets", "probe", "--url", url, "--duration", "1s")
    assert result.exit_code == 1
    assert f"Error: cannot connect to {url}" in result.stderr


def test_probe_sends_the_token_in_a_header(
    cli,
    start_server,  # noqa: F811
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against a server with a token the probe's streams authenticate by the Authorization
    header (the server no longer needs ?token= in the URL, where it would end up in logs)."""
    import aiohttp

    urls: list[str] = []
    real_ws_connect = aiohttp.ClientSession.ws_connect

    def spy(self: aiohttp.ClientSession, url: str, *args: object, **kwargs: object) -> object:
        urls.append(str(url))
        return real_ws_connect(self, url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiohttp.ClientSession, "ws_connect", spy)
    token = "probe-token-0123456789"
    server = start_server("--db", init_db(sqlite_url), env={"EMROPS_SIM_TOKEN": token})
    args = ["sockets", "probe", "--url", server.url, "--clients", "2", "--sessions", "1"]
    args += ["--duration", "1s", "--rate", "5/s", "--json"]
    result = cli(*args, env={"EMROPS_SIM_TOKEN": token})
    assert result.exit_code == 0, result.stderr
    assert len(urls) >= 2 and not [u for u in urls if token in u or "token=" in u], urls
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["totals"]["lost"] == 0
    assert token not in result.stdout + result.stderr + server.log()
    refused = cli(*args, env={"EMROPS_SIM_TOKEN": "wrong-token-000000000"})
    assert refused.exit_code != 0 and "401" in refused.stderr


def test_a_silent_server_fails_the_preparation_within_its_deadline(cli, blackhole: int) -> None:
    started = time.monotonic()
    result = cli("sockets", "probe", "--url", f"http://127.0.0.1:{blackhole}", "--clients", "3",
                 "--duration", "1s", "--settle", "1s")  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert elapsed < 10 + 2, elapsed
    assert result.stderr.splitlines()[-2] == (
        f"Error: no answer from http://127.0.0.1:{blackhole} within 10s while preparing sessions"
    )


def test_a_request_timing_out_before_the_deadline_reads_as_the_same_silence(
    blackhole: int,
) -> None:
    # under load a request's own 10 s timeout fired just before the 10 s preparation deadline:
    # TimeoutError is an OSError, so it read "cannot prepare sessions ...: TimeoutError: "
    import asyncio

    import aiohttp

    from emrops.sockets.probe import _setup

    async def prepare() -> None:
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await _setup(http, f"http://127.0.0.1:{blackhole}", 1)

    with pytest.raises(TimeoutError):
        asyncio.run(prepare())
