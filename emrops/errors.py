"""The one error family of emrops and its documented exit codes.

Core code raises these; the CLI group class (emrops.cli.app.EmropsGroup) turns
them into ``Error: ...`` / ``Try: ...`` on stderr and the matching exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, the same for every command (documented in the README)."""

    OK = 0
    ERROR = 1
    USAGE = 2  # bad flags/values, or confirmation needed without a TTY and without --yes
    CHECK_FAILED = 3  # verification, budget or health check failed
    PENDING = 4  # changes pending / drift detected
    BUSY = 75  # a lock is held by someone else (EX_TEMPFAIL)
    INTERRUPTED = 130  # SIGINT / Ctrl-C


class EmropsError(Exception):
    """Base of every expected failure: a message, a hint and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, *, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(EmropsError):
    """Bad input from the user: flags, values, config file contents."""

    exit_code = ExitCode.USAGE


class ConfirmationRequired(UsageError):
    """A destructive command needs --yes when there is no TTY to ask on."""


class ConfigError(UsageError):
    """The configuration file or an EMROPS_* variable is invalid."""


class CheckFailed(EmropsError):
    """A verification, a budget or a health check failed."""

    exit_code = ExitCode.CHECK_FAILED


class ChangesPending(EmropsError):
    """A plan found changes (drift) that have not been applied."""

    exit_code = ExitCode.PENDING


class Busy(EmropsError):
    """A lock is held by another process."""

    exit_code = ExitCode.BUSY


class DatabaseError(EmropsError):
    """The database could not be reached or used."""


class Interrupted(EmropsError):
    """The user interrupted the command."""

    exit_code = ExitCode.INTERRUPTED
