"""The ``ecg-sweep`` command line: thin Typer commands over the library.

Every command is registered here and only here. Command modules (``*_cmd.py``) never import each
other (an import-linter contract); what they share is in ``options.py`` and ``_common.py``.
Their heavy imports (torch, mlflow, optuna) happen inside the commands, so ``--help`` and the
``data`` commands start fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import typer

from ecg_sweep.cli import (
    compare_cmd,
    compress_cmd,
    dashboard_cmd,
    data_cmd,
    optimize_cmd,
    registry_cmd,
    train_cmd,
    ui_cmd,
)
from ecg_sweep.errors import EcgSweepError, Terminated
from ecg_sweep.tracking.client import mask_url

app = typer.Typer(
    help="Optuna sweeps with MLflow tracking for deep-learning ECG diagnosis on PTB-XL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cmd.app, name="data")
app.command("models")(train_cmd.models_cmd)
app.command("train")(train_cmd.train_cmd)
app.command("optimize")(optimize_cmd.optimize_cmd)
app.command("compress")(compress_cmd.compress_cmd)
app.command("compare")(compare_cmd.compare_cmd)
app.command("promote")(registry_cmd.promote_cmd)
app.command("predict")(registry_cmd.predict_cmd)
app.command("ui")(ui_cmd.ui_cmd)
app.command("dashboard")(dashboard_cmd.dashboard_cmd)

_state = {"debug": False}


class _MaskingFormatter(logging.Formatter):
    """Log lines (and the tracebacks they carry) with every URL password masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record, not as it was at setup: while a rich
    progress bar is live, rich swaps in a proxy that prints lines above the bar."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="ECG_SWEEP_DEBUG", help="Show tracebacks for errors."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["debug"] = debug
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        _MaskingFormatter("%(levelname)s %(name)s: %(message)s" if debug else "%(message)s")
    )
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler])
    for noisy in ("alembic", "urllib3", "git", "matplotlib", "PIL", "numexpr", "mlflow", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow draws tqdm bars on artifact downloads; our output has its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _on_sigterm(signum, frame) -> None:
    # Once: a second SIGTERM must not break the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2;
    SIGTERM is handled like Ctrl-C (one line, exit 143)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        _run(argv)
    finally:
        if previous is not None:  # main() called in-process (tests, scripts) leaves no handler
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> None:
    try:
        app(args=argv, prog_name="ecg-sweep")
    except EcgSweepError as e:
        if _state["debug"] or os.environ.get("ECG_SWEEP_DEBUG"):
            _print_traceback()
            sys.exit(e.exit_code)
        print(mask_url(f"error: {e}"), file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        _interrupted(e)
    except SystemExit as e:
        # Typer turns Ctrl-C into a silent exit 130: find the interrupt behind it (a command
        # that ends cleanly on Ctrl-C, like `ui`, exits with its own code).
        if e.code != 130:
            raise
        cause = e.__context__
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        _interrupted(cause)
    except Exception:  # a bug: its traceback is wanted, but never a password it quotes
        _print_traceback()
        sys.exit(1)


def _interrupted(e: KeyboardInterrupt) -> None:
    if isinstance(e, Terminated):
        print("error: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(Terminated.exit_code)
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)


def _print_traceback() -> None:
    import traceback

    print(mask_url(traceback.format_exc()), file=sys.stderr, end="")


if __name__ == "__main__":
    main()
