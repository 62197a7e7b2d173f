"""Automatic checks: resolve a check's command line before a run, and run it with a timeout.

Commands are split like a POSIX shell (shlex) but run without one, so a checklist cannot
smuggle in pipes or globbing. ``emrops ...`` runs this very emrops (``python -m emrops``),
so a check calls the same code and configuration as the person running the checklist.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from emrops import secrets
from emrops.checklist.model import Check, Checklist

MAX_OUTPUT = 4000  # characters of check output kept in the run file (head + tail, masked)

EmropsResolver = Callable[[list[str]], str | None]
"""Given the words after ``emrops``, return why they are not a valid command, or None."""


@dataclass
class CheckResult:
    """What one run of a check did. ``output`` is masked and truncated to its tail."""

    command: str
    exit_code: int | None
    expected: list[int]
    passed: bool
    timed_out: bool
    duration_s: float
    output: str
    truncated: bool
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration_s:.1f}s"
        expected = " or ".join(map(str, self.expected))
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {_signal_name(-self.exit_code)}, expected exit {expected}"
        if self.passed:
            return f"exit {self.exit_code}"
        return f"exit {self.exit_code}, expected {expected}"


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SUBST = re.compile(r"\{env\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnsetVariable(Exception):
    """A check refers to ``${NAME}`` and NAME is not set."""


def render(check: Check, env: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The command line with ``{env}`` replaced by the run's environment and ``${NAME}`` by
    environment variables, each shell-quoted (one argument whatever it holds) and substituted
    in one pass (a value is never itself expanded). Raises UnsetVariable naming the first
    unset one."""
    environ = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # {env}
            return shlex.quote(env) if env else ""
        if not environ.get(name):
            raise UnsetVariable(name)
        return shlex.quote(environ[name])

    return _SUBST.sub(value, check.run)


# ${NAME}s whose value is a secret: it is masked wherever it shows up (output, reasons)
_SECRET_VARIABLE = re.compile(r"TOKEN|SECRET|PASSW|PWD|KEY|CREDENTIAL|SIG|AUTH|PASS", re.I)


def display(check: Check, env: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The command line as people and run files see it: ``{env}`` filled in, ``${NAME}`` left
    as written (values of variables never leave the process in a command line), masked.
    Values of secret-looking variables are registered, so the check's output masks them."""
    environ = os.environ if environ is None else environ
    for name in variables(check):
        if _SECRET_VARIABLE.search(name):
            secrets.register_secret(environ.get(name))
    text = check.run.replace("{env}", shlex.quote(env) if env else "")
    return secrets.mask(text)


def variables(check: Check) -> list[str]:
    return _VAR.findall(check.run)


def argv_for(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] == "emrops":
        return [sys.executable, "-m", "emrops", *argv[1:]]
    return argv


def command_problem(command: str, resolver: EmropsResolver | None) -> str | None:
    """Why ``command`` cannot run here (unknown emrops command, program not found), or None."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot parse it: {exc}"
    if not argv:
        return "it is empty"
    if argv[0] == "emrops":
        return resolver(argv[1:]) if resolver is not None else None
    program = argv[0]
    if "/" in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            return f"{program} does not exist or is not executable"
        return None
    if shutil.which(program) is None:
        return f"program {program!r} not found on PATH"
    return None


def preflight(
    checklist: Checklist, env: str | None, resolver: EmropsResolver | None, item_ids: set[str]
) -> list[str]:
    """Problems with the checks of the given items, each as ``file:line: message``."""
    problems = []
    for item in checklist.items:
        if item.id not in item_ids or item.check is None:
            continue
        try:
            problem = command_problem(render(item.check, env), resolver)
        except UnsetVariable as exc:
            problem = f"uses ${{{exc}}}, which is not set (export {exc}=... before the run)"
        if problem:
            problems.append(
                f"{checklist.path}:{item.check.line}: item {item.id}: "
                f"check command `{item.check.run.strip()}`: {secrets.mask(problem)}"
            )
    return problems


def _clip(text: str, limit: int = MAX_OUTPUT) -> tuple[str, bool]:
    """Keep the head (what ran) and the longer tail (how it ended) of long output."""
    if len(text) <= limit:
        return text, False
    head, tail = limit // 4, limit - limit // 4
    cut = len(text) - limit
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}", True


# After the check's own process exits, how long its output is still read: a background
# process it started (``daemon &``, ``setsid``) may hold the pipe open for ever.
OUTPUT_GRACE = 1.0
# Bytes of raw output kept at each end: a check printing gigabytes must not fill memory.
KEEP_BYTES = 4 * MAX_OUTPUT


class _Output:
    """The first and last KEEP_BYTES of a stream, and how many bytes fell in between."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = KEEP_BYTES - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > KEEP_BYTES:
            extra = len(self.tail) - KEEP_BYTES
            del self.tail[:extra]
            self.dropped += extra

    def text(self) -> tuple[str, bool]:
        """Masked, clipped text (see _clip) and whether anything was cut."""
        if not self.dropped:
            return _clip(secrets.mask(_decode(bytes(self.head + self.tail))))
        head = secrets.mask(_decode(bytes(self.head)))
        tail = secrets.mask(_decode(bytes(self.tail)))
        keep_head, keep_tail = MAX_OUTPUT // 4, MAX_OUTPUT - MAX_OUTPUT // 4
        cut = self.dropped + max(0, len(head) - keep_head) + max(0, len(tail) - keep_tail)
        return f"{head[:keep_head]}\n[... {cut} characters cut ...]\n{tail[-keep_tail:]}", True


def _decode(raw: bytes) -> str:
    # NUL and other binary bytes stay in the text; the terminal side makes them visible
    return raw.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bool, bool, _Output]:
    """Read the check's output until its end, its timeout, or OUTPUT_GRACE after it exited.

    Returns (timed out, output still held open by something it started, the output). On a
    timeout the check's process group is killed. Never blocks past the timeout plus the
    grace: a daemon that left the group and keeps the pipe open is not waited for.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = _Output()
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    timed_out = held = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is None and now >= deadline:
                timed_out = True
                _kill_group(proc)
                proc.wait()
                exited_at = now = time.monotonic()
            if exited_at is not None and now >= exited_at + OUTPUT_GRACE:
                held = not timed_out
                _kill_group(proc)  # whatever it left in its group
                break
            wait = (deadline if exited_at is None else exited_at + OUTPUT_GRACE) - now
            if not selector.select(timeout=max(0.0, min(wait, 0.1))):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:  # EOF: every writer is gone
                if exited_at is None:
                    try:
                        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        timed_out = True
                        _kill_group(proc)
                        proc.wait()
                break
            buf.add(chunk)
    proc.stdout.close()
    return timed_out, held, buf


def run_check(
    check: Check,
    env: str | None,
    *,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> CheckResult:
    """Run a check's command with its timeout; never raises for a failing or missing command."""
    expected = list(check.expect_exit)
    try:
        command = render(check, env)
    except UnsetVariable as exc:
        return CheckResult(
            command=secrets.mask(check.run),
            exit_code=None,
            expected=expected,
            passed=False,
            timed_out=False,
            duration_s=0.0,
            output="",
            truncated=False,
            error=f"environment variable {exc} is not set",
        )
    shown = display(check, env)
    child_env = dict(os.environ)
    child_env.update(extra_env or {})
    child_env["EMROPS_CHECKLIST_ENV"] = env or ""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv_for(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=child_env,
            start_new_session=True,  # own process group: a timeout kills its children too
        )
    except (OSError, ValueError) as exc:
        return CheckResult(
            command=shown,
            exit_code=None,
            expected=expected,
            passed=False,
            timed_out=False,
            duration_s=0.0,
            output="",
            truncated=False,
            error=f"cannot start `{shown}`: {getattr(exc, 'strerror', None) or exc}",
        )
    try:
        timed_out, held, buf = _collect(proc, check.timeout)
    except BaseException:  # Ctrl-C while a check runs: do not leave it behind
        _kill_group(proc)
        proc.wait()
        raise
    duration = time.monotonic() - started
    output, truncated = buf.text()
    if held:
        output += (
            "\n[emrops: the check exited but a process it started kept its output open; "
            "stopped reading]"
        )
    code = None if timed_out else proc.returncode
    return CheckResult(
        command=shown,
        exit_code=code,
        expected=expected,
        passed=not timed_out and code in check.expect_exit,
        timed_out=timed_out,
        duration_s=round(duration, 3),
        output=output,
        truncated=truncated,
        error=f"timed out after {check.timeout_text}" if timed_out else None,
    )
