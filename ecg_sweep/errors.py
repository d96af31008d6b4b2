"""User-facing errors.

Anything a user can cause (a bad path, a bad flag, a malformed record) raises a subclass of
:class:`EcgSweepError`. The CLI prints its message as one line and exits non-zero; library users
catch it like any exception. Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

__all__ = [
    "EcgSweepError",
    "DataError",
    "ConfigError",
    "TrackingError",
    "StorageError",
    "LockTimeoutError",
    "Terminated",
    "clip",
]

# The most characters of user-supplied text (a CSV cell, a header token, a zip member name) that
# an error message quotes: enough to recognise the value, never a 400 KB "one-line" error.
CLIP_CHARS = 120


def clip(value: object, limit: int = CLIP_CHARS, *, bare: bool = False) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long the original was.

    Newlines and control characters come out escaped (it is a repr), so the result is one line.
    ``bare=True`` leaves a short, printable value unquoted (for names: ``NORMX``, not ``'NORMX'``).
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text if bare and text.isprintable() else repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


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


class LockTimeoutError(EcgSweepError):
    """Waiting for an inter-process lock (the signal cache, a store's setup) took too long."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler: a KeyboardInterrupt, so every
    Ctrl-C path (Optuna failing the running trial, runs ended KILLED) handles it the same way."""

    exit_code = 143  # 128 + SIGTERM
