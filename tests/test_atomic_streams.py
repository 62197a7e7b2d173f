"""Output paths that are not plain files: a device, a named pipe, a symlink.

Every `--out`, `--junit` and report file is written beside and renamed over its path. For
`--out /dev/null` (a usual way to drop an output in CI, where jobs often run as root) that
rename put a regular file in the device's place, for every process on the machine; a symlink
was replaced by a file, leaving the file it pointed to as it was. Now a device or pipe is
written to as it is, and a symlink's file is replaced with the link kept.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from emrops import atomic
from emrops.errors import EmropsError


def test_a_device_stays_a_device(tmp_path: Path, cli) -> None:
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("creating a device node needs root")
    before = os.stat(null)
    result = cli(
        "loadtest", "export", "--format", "locust", "--scenario", "chat",
        "--rate", "10/s", "--out", str(null),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    after = os.stat(null)
    # before: a regular file holding the locustfile, where the device was
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left


def test_a_named_pipe_is_written_into(tmp_path: Path) -> None:
    pipe = tmp_path / "out.pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    atomic.write_json(pipe, {"ok": True})
    reader.join(10)
    assert got == [b'{\n  "ok": true\n}\n']
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_a_symlink_keeps_pointing_at_the_written_file(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    real = tmp_path / "reports" / "result.json"
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    atomic.write_text(link, "new")
    # before: the link was replaced by a file holding "new"; the report still said "old"
    assert link.is_symlink()
    assert real.read_text() == "new"
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.endswith(".tmp")]


def test_a_dangling_symlink_creates_its_file(tmp_path: Path) -> None:
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "made.json")
    atomic.write_text(link, "x")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x"


def test_a_socket_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        with pytest.raises(EmropsError, match=f"cannot write {path}"):
            atomic.write_text(path, "x")
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        sock.close()


def test_lines_appended_to_a_device(tmp_path: Path) -> None:
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    # before: OSError EINVAL from fsync, so `migrate-db run --reject-file /dev/null` failed
    # at its first rejected row
    atomic.append_line(null, '{"row": 1}')
    assert stat.S_ISCHR(os.stat(null).st_mode)
    log = tmp_path / "audit.log"
    atomic.append_line(log, "a")
    atomic.append_line(log, "b")
    assert log.read_text() == "a\nb\n"
