"""The standard streams of the emrops process: closed ones, and a reader that went away.

* A caller that closes fd 0, 1 or 2 (`emrops ... <&-`, `2>&-`, some daemon managers) left
  Python with ``sys.stdin = None``: "unexpected AttributeError: 'NoneType' object has no
  attribute 'isatty'", and the next file emrops opened took the closed number, so a child
  process writing to "its stdout" wrote into that file. Each closed one is opened on
  /dev/null before anything runs: no input (end of input, as documented for prompts), and
  output to a closed stream is dropped, as Python drops it.
* stdout on a full file system or device (`> /dev/full`, a redirect into a full disk):
  "unexpected OSError: [Errno 28] No space left on device ... report it". Writes to stdout
  go through :class:`GuardedStdout`, which turns such an OSError into an EmropsError saying
  that the output could not be written (exit 1).
* A reader that stops reading stdout (`emrops ... | head -1`) made the next write fail with
  BrokenPipeError: "unexpected BrokenPipeError" and a request to report a bug. The command
  now stops quietly (exit 1: its output was cut short), like a Unix tool killed by SIGPIPE.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import Any

from emrops.errors import EmropsError

_STREAMS = ((0, os.O_RDONLY, "stdin"), (1, os.O_WRONLY, "stdout"), (2, os.O_WRONLY, "stderr"))


def reopen_closed() -> list[str]:
    """Open /dev/null in place of each closed standard fd; the names of those reopened."""
    reopened = []
    for fd, flags, name in _STREAMS:
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        opened = os.open(os.devnull, flags)  # the lowest free number: fd itself
        if opened != fd:
            os.dup2(opened, fd)
            os.close(opened)
        mode = "r" if fd == 0 else "w"
        setattr(sys, name, open(fd, mode, encoding="utf-8", errors="replace", closefd=False))  # noqa: SIM115
        reopened.append(name)
    return reopened


def stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (POLLERR on its write end)."""
    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's final flush does not fail again
    ("Exception ignored ... BrokenPipeError" on stderr at exit)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


class OutputError(EmropsError):
    """stdout could not be written (a full disk or device, an I/O error)."""


class GuardedStdout:
    """sys.stdout, with a failed write or flush (other than a broken pipe) as OutputError."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _output_error(exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write the output (stdout): {exc.strerror or exc}",
        hint="stdout goes to a full file system or device: free space there, or send the "
        "output elsewhere",
    )


def guard_stdout() -> None:
    if sys.stdout is not None and not isinstance(sys.stdout, GuardedStdout):
        sys.stdout = GuardedStdout(sys.stdout)  # type: ignore[assignment]


def final_flush() -> str | None:
    """Flush stdout before the interpreter does (its failure there is 'Exception ignored'
    and exit 120); the error message when it fails, None when all was written."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OutputError as exc:
        silence_stdout()
        return exc.message
    return None
