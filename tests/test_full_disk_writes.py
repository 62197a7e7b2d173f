"""State and result files written when the disk (or the file size limit) has no room.

Before: emrops/atomic.py let the OSError of a failed write through, and the close() of the
half-written file raised a second one over it, so `checklist run` and `schedule run-job` ended in
"unexpected OSError: [Errno 28] No space left on device" (after the backup had been taken, for
the job). The file size limit (RLIMIT_FSIZE, EFBIG) stands in for a full disk here: the same
code path, and no root needed. A tmpfs variant runs where one can be mounted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.conftest import tmpfs
from tests.schedule.conftest import init_db, write_config


def _limited(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _emrops(args: list[str], cwd: Path, limit: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limited(limit),
        timeout=120,
        check=False,
    )


def test_atomic_write_without_room_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("the old content\n")
    code = (
        "from emrops import atomic\n"
        "from emrops.errors import EmropsError\n"
        "try:\n"
        f"    atomic.write_text({str(target)!r}, 'x' * 100_000)\n"
        "except EmropsError as exc:\n"
        "    print(exc.message); print(exc.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limited(4096),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write {target}: File too large (nothing was changed")
    assert f"free space on the file system of {tmp_path}" in done.stdout
    assert target.read_text() == "the old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary file


def test_checklist_run_without_room_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = _emrops(
        ["checklist", "run", "recovery-drill", "--non-interactive"],
        tmp_path,
        1024,
        EMROPS_STATE_DIR=str(state),
        CI="true",
    )
    assert done.returncode == 1, done.stderr
    assert "unexpected" not in done.stderr
    assert "File too large (nothing was changed there)" in done.stderr
    assert "Try: free space on the file system of" in done.stderr
    runs = state / "checklists" / "runs"
    assert not [p for p in runs.iterdir() if p.name.endswith(".tmp")]


def test_job_status_that_cannot_be_recorded_fails_the_job_run(
    cli, tmp_path: Path, sqlite_url: str
) -> None:
    """The backup is taken; its status cannot be written (here: a folder stands where the file
    goes). run-job says so and exits 1, rather than 0 with a stale status for health checks
    (or, before, an "unexpected" error)."""
    init_db(sqlite_url)
    write_config(tmp_path, **{"": {"db_url": sqlite_url}, "schedule": {"status_dir": "status"}})
    (tmp_path / "status" / "backup.json").mkdir(parents=True)
    result = cli("schedule", "run-job", "backup")
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr
    assert "Error: job backup success, but its status could not be recorded" in result.stderr
    assert f"free space in (or fix the permissions of) {tmp_path / 'status'}" in result.stderr
    listed = cli("backup", "list", "--json")
    assert listed.exit_code == 0
    assert len(json.loads(listed.stdout)["backups"]) == 1  # the backup stands


def test_checklist_on_a_full_tmpfs(tmp_path: Path) -> None:
    with tmpfs("size=64k") as mount:
        (mount / "filler").write_bytes(os.urandom(60_000))
        run = _emrops(
            ["checklist", "run", "recovery-drill", "--non-interactive"],
            tmp_path,
            resource.RLIM_INFINITY,
            EMROPS_STATE_DIR=str(mount / "state"),
            CI="true",
        )
        assert run.returncode == 1, run.stderr
        assert "unexpected" not in run.stderr
        assert "No space left on device (nothing was changed there)" in run.stderr
