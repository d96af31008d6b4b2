"""User-facing errors.

Anything a user can cause (a bad path, a bad flag, a malformed record) raises a subclass of
:class:`EcgSweepError`. The CLI prints its message as one line and exits non-zero; library users
catch it like any exception. Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

__all__ = ["EcgSweepError", "DataError", "ConfigError", "TrackingError", "StorageError"]


class EcgSweepError(Exception):
    """Base class for errors caused by user input; the message is one self-contained line."""

    exit_code = 2


class DataError(EcgSweepError):
    """A dataset folder, CSV or record is missing or malformed."""


class ConfigError(EcgSweepError):
    """A flag, config value, search-space file or model name is invalid."""


class TrackingError(EcgSweepError):
    """The MLflow tracking server or registry is unreachable or refuses an operation."""


class StorageError(EcgSweepError):
    """The Optuna storage is unreachable or inconsistent."""
