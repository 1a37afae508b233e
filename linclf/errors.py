"""Exception types of linclf and the exit code each maps to.

Library code raises these; only the CLI turns them into a one-line message and
an exit code: 0 ok, 1 runtime failure, 2 usage or config error, 3 accuracy
below what a CI job asked for, 130 interrupted (143 by SIGTERM). A few more
types live beside the code that raises them (SchedulerError, OutputError, ...).
"""
from __future__ import annotations


class LinclfError(Exception):
    """Base class: a failure the user can act on; its message is one line."""

    exit_code = 1


class UsageError(LinclfError):
    """The command line or an argument was wrong (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or --set override was wrong; the message names the key path (exit 2)."""


class DataError(LinclfError):
    """The dataset is missing, malformed or unsafe (exit 1)."""


class ChecksumError(DataError):
    """A file's checksum is not the one expected."""


class UnsafeArchiveError(DataError):
    """An archive or pickle tried something outside what a CIFAR-10 file needs."""


class DownloadError(LinclfError):
    """Every URL failed; the message lists each failure."""


class ModelFileError(LinclfError):
    """A model/checkpoint file is missing, truncated, pickled, of another version or shape.

    ``problem`` is what is wrong with the file, without the advice that may follow it in the message (a
    caller that expects another kind of file gives its own).
    """

    def __init__(self, problem: str, advice: str = "") -> None:
        super().__init__(f"{problem}; {advice}" if advice else problem)
        self.problem = problem


class MissingModelError(ModelFileError):
    """The model or checkpoint path given does not exist or is a folder: a usage error (exit 2)."""

    exit_code = 2


class MissingArchiveError(DataError):
    """The --archive path given does not exist: a usage error (exit 2)."""

    exit_code = 2


class DivergenceError(LinclfError):
    """Training produced a non-finite loss."""


class GradcheckError(LinclfError):
    """An analytic gradient disagrees with the numerical one."""


class AccuracyError(LinclfError):
    """An accuracy is below the --expect-accuracy a caller asked for (exit 3)."""

    exit_code = 3


class Interrupted(LinclfError):
    """The user interrupted (Ctrl-C); whatever could be saved was saved (exit 130)."""

    exit_code = 130


class LinclfWarning(UserWarning):
    """Something worked but deserves a one-line notice (e.g. an unofficial archive)."""


def short_reason(e: BaseException) -> str:
    """A short one-line description of an exception (``Type: text``) for the middle of a message."""
    text = " ".join(str(e).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
