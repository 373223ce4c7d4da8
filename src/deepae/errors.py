"""The project's exceptions, all of them.

The library raises `DeepAEError` (or a subclass) for anything a user can fix: bad input,
missing files, corrupt data. The CLI turns it into one line on stderr and exit code 2.
Messages say what was wrong, with what, and what to do. They name the library's own
argument or config field (`field`); the CLI maps a field to its command-line flag.
"""

from __future__ import annotations


class DeepAEError(Exception):
    """A problem the user can fix; the message is meant for people.

    `field`, when set, is the config field or argument the problem is about (e.g. "lr"),
    so that a front end can name it in its own terms (the CLI says `--lr`)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class DataError(DeepAEError, ValueError):
    """A dataset file is missing, corrupt, or not what it claims to be; or images given to
    the library are not what it takes. A ValueError too, as NumPy and scikit-learn raise
    for bad values, so `except ValueError` and scikit-learn's checks catch it."""


class RunError(DeepAEError):
    """A run folder or a saved model is missing, incomplete or corrupt."""


class ConfigError(DeepAEError, ValueError):
    """A configuration value or an argument is invalid (a ValueError too, as DataError)."""


class CheckpointMismatch(RunError):
    """A value of a checkpoint does not fit the run's trainer (deepae.run.checkpoint turns
    it into a RunError naming the file)."""


class TrainingDiverged(DeepAEError):
    """The loss became NaN or infinite; the model is given back as it was before the epoch
    that diverged (weights, optimizer state, schedule), and a run's last good checkpoint
    is kept."""


class MissingExtraError(DeepAEError):
    """An optional dependency is not installed; the message says which extra to install."""


class DistributedError(DeepAEError):
    """A process of a data-parallel run stopped, hung or could not be reached
    (deepae.distributed). `reported`: another process prints this error already, so this
    one may exit without repeating it."""

    def __init__(self, message: str, *, field: str | None = None, reported: bool = False):
        super().__init__(message, field=field)
        self.reported = reported
