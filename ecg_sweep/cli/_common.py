"""Shared CLI pieces: common options, progress bars, output helpers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(
    stderr=True, soft_wrap=True, highlight=False
)  # status and progress go to stderr; results to stdout
out = Console(highlight=False, soft_wrap=True)

DATA_ENV = "ECG_SWEEP_DATA"

DataDirOpt = typer.Option(
    None, "--data-dir", envvar=DATA_ENV, help="PTB-XL root folder (env ECG_SWEEP_DATA)."
)
CacheDirOpt = typer.Option(
    None,
    "--cache-dir",
    envvar="ECG_SWEEP_CACHE",
    help="Decoded-signal cache folder (default ~/.cache/ecg-sweep; env ECG_SWEEP_CACHE).",
)
SamplingRateOpt = typer.Option(100, "--sampling-rate", help="100 or 500 Hz records.")
TaskOpt = typer.Option(
    "superdiagnostic",
    "--task",
    help="Label task: superdiagnostic, subdiagnostic, diagnostic, form, rhythm.",
)
OnBadOpt = typer.Option(
    "error", "--on-bad-record", help="error: stop at a bad record; skip: drop bad records."
)
WorkersOpt = typer.Option(None, "--workers", help="Decode processes (default: all cores).")


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar on stderr."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal and not os.environ.get("ECG_SWEEP_FORCE_PROGRESS"),
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def path_or_none(p: Path | None) -> Path | None:
    return Path(p).expanduser() if p else None
