"""The operator's reload command (``--reload-cmd``), run after cutover or rollback switches the
config file.

It runs without a shell (split like a POSIX shell with shlex) unless the operator asks for one
(``--reload-shell``), in its own process group, and is killed with its children when it
outlives its timeout. Its output is masked before it is shown.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass

from emrops import secrets
from emrops.errors import UsageError

DEFAULT_TIMEOUT_S = 60.0
_MAX_DETAIL = 500


@dataclass(frozen=True)
class ReloadCommand:
    """What to run: ``command`` split into argv unless ``shell``; killed after ``timeout_s``."""

    command: str
    shell: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    def argv(self) -> list[str] | str:
        if self.shell:
            return self.command
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise UsageError(
                f"cannot parse --reload-cmd: {exc}", hint="quote it like a shell command"
            ) from None
        if not argv:
            raise UsageError("--reload-cmd is empty")
        return argv

    def check(self) -> None:
        """Raise UsageError before anything changes when the command cannot be parsed."""
        if self.timeout_s <= 0:
            raise UsageError("--reload-timeout must be more than 0 seconds")
        self.argv()


@dataclass
class ReloadOutcome:
    """How the reload command ended: ``ok``, and a one-line masked ``detail``."""

    ok: bool
    detail: str


def run_reload(reload: ReloadCommand) -> ReloadOutcome:
    """Run the command; never raises for a failing, missing or hanging command."""
    argv = reload.argv()
    try:
        proc = subprocess.Popen(
            argv,
            shell=reload.shell,  # only when the operator passed --reload-shell
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a timeout kills its children too
        )
    except OSError as exc:
        return ReloadOutcome(False, f"cannot start it: {exc.strerror or exc}")
    try:
        raw, _ = proc.communicate(timeout=reload.timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return ReloadOutcome(False, f"killed after its {reload.timeout_s:g}s timeout")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    text = secrets.mask(raw.decode("utf-8", errors="replace").strip())
    last = text.splitlines()[-1][:_MAX_DETAIL] if text else ""
    detail = f"exit {proc.returncode}" + (f": {last}" if last and proc.returncode else "")
    return ReloadOutcome(proc.returncode == 0, detail)
