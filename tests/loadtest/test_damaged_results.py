"""`loadtest compare` with a result file that names the right schema but whose content is
damaged or edited by hand: exit 2 naming the file, never an "unexpected" error (before: a
`config` that is not an object gave "unexpected AttributeError")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.loadtest.conftest import Server


def _set(*path: object, value: object) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


DAMAGE = {
    "config null": _set("config", value=None),
    "config a list": _set("config", value=[1]),
    "repeats an object": _set("repeats", value={}),
    "a repeat that is text": _set("repeats", 0, value="x"),
    "latency null": _set("repeats", 0, "latency", value=None),
    "histogram not base64": _set("repeats", 0, "latency", "histogram", value="AAAA"),
    "histogram a number": _set("repeats", 0, "latency", "histogram", value=5),
    "rps text": _set("repeats", 0, "rps", value="fast"),
    "steps a list": _set("repeats", 0, "steps", value=[1]),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, sim_sqlite: Server) -> Path:
    from typer.testing import CliRunner

    from emrops.cli.main import app

    folder = tmp_path_factory.mktemp("lt")
    out = folder / "base.json"
    result = CliRunner().invoke(
        app,
        ["loadtest", "run", "--url", sim_sqlite.url, "--scenario", "health",
         "--rate", "20/s", "--duration", "1s", "--repeat", "2", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_result_is_named(cli, tmp_path: Path, base: Path, case: str) -> None:
    doc = json.loads(base.read_text())
    DAMAGE[case](doc)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(doc))
    for files in ((str(damaged), str(base)), (str(base), str(damaged))):
        result = cli("loadtest", "compare", *files)
        assert result.exit_code == 2, (case, result.stderr)
        assert "unexpected" not in result.stderr
        assert f"{damaged} is not a complete loadtest result" in result.stderr, result.stderr
