"""Registration of the top-level commands (train, optimize, compress, ...)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach every top-level command to ``app``."""
