"""The project's exceptions.

The library raises `DeepAEError` (or a subclass) for anything a user can fix: bad input,
missing files, corrupt data. The CLI turns it into one line on stderr and exit code 2.
Messages say what was wrong, with what, and what to do.
"""


class DeepAEError(Exception):
    """A problem the user can fix; the message is meant for people."""


class DataError(DeepAEError):
    """A dataset file is missing, corrupt, or not what it claims to be."""


class RunError(DeepAEError):
    """A run folder or a saved model is missing, incomplete or corrupt."""


class ConfigError(DeepAEError):
    """A configuration value or a command-line option is invalid."""
