"""Progress on a real terminal: the CLI runs as a subprocess on a pseudo-terminal (``pty``),
so rich sees a TTY exactly as a person's shell gives it one. The progress is drawn there as a
live status line; with stdout piped (``emrops ... | cat`` at a terminal) none of it reaches
stdout, which keeps only the result."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR = b"\x1b[?25l"  # rich's live status hides the cursor while it redraws the line


def run_on_tty(args: list[str], cwd: Path, *, pipe_stdout: bool) -> tuple[int, bytes, bytes]:
    """Run ``python -m emrops ARGS`` with stderr (and stdout unless piped) on a pty.

    Returns (exit code, what the terminal received, what the stdout pipe received)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env.update(TERM="xterm-256color", COLUMNS="160", LINES="40")
    for key in ("CI", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", *args],
        stdin=slave,
        stdout=subprocess.PIPE if pipe_stdout else slave,
        stderr=slave,
        cwd=cwd,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # a full pty buffer would stall the child
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side has closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(timeout=120)
    reader.join(10)
    os.close(master)
    return code, b"".join(chunks), stdout


def _plain(data: bytes) -> str:
    return ANSI.sub(b"", data).replace(b"\r", b"\n").decode(errors="replace")


BENCH = ["benchmark", "run", "--workload", "write", "--clients", "1,2", "--duration", "1s",
         "--warmup", "0.2s", "--repeat", "1", "--sessions", "20", "--processes", "1"]  # fmt: skip


def test_benchmark_draws_cell_progress_with_eta_on_the_terminal(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bench.db'}"
    code, tty, _ = run_on_tty([*BENCH, "--db", db], tmp_path, pipe_stdout=False)
    assert code == 0, _plain(tty)
    assert HIDE_CURSOR in tty  # a live status line, not log lines
    text = _plain(tty)
    assert re.search(r"cell 1/2: repeat 1/1, \S+, 1 client\(s\); ETA \d", text), text
    assert re.search(r"cell 2/2: repeat 1/1, \S+, 2 client\(s\); ETA \d", text), text


def test_benchmark_progress_never_reaches_a_piped_stdout(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bench.db'}"
    code, tty, stdout = run_on_tty([*BENCH, "--db", db], tmp_path, pipe_stdout=True)
    assert code == 0, _plain(tty)
    assert "cell 1/2" in _plain(tty) and HIDE_CURSOR in tty  # still drawn on the terminal
    assert b"cell " not in stdout and b"ETA" not in stdout
    assert b"\x1b" not in stdout and b"\r" not in stdout  # no redraws: plain rows
    header = stdout.decode().splitlines()[0]
    assert "\t" in header  # the result as TSV with a header, nothing before it


SEED = ["sim", "seed", "--sessions", "3000", "--messages-per-session", "5", "--seed", "7"]


def test_sim_seed_draws_its_progress_on_the_terminal_and_not_in_a_piped_stdout(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'seed.db'}"
    code, tty, _ = run_on_tty([*SEED, "--db", db], tmp_path, pipe_stdout=False)
    assert code == 0, _plain(tty)
    assert HIDE_CURSOR in tty
    assert re.search(r"seeding: \d+/3000 sessions", _plain(tty)), _plain(tty)
    db2 = f"sqlite:///{tmp_path / 'seed2.db'}"
    code, tty, stdout = run_on_tty([*SEED, "--db", db2], tmp_path, pipe_stdout=True)
    assert code == 0, _plain(tty)
    assert re.search(r"seeding: \d+/3000 sessions", _plain(tty))
    assert b"seeding" not in stdout and b"\x1b" not in stdout and b"\r" not in stdout
