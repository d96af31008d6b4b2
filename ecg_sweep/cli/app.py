"""The ``ecg-sweep`` command line: thin Typer commands over the library."""

from __future__ import annotations

import logging
import os
import sys

import typer

from ecg_sweep.cli import data as data_cli
from ecg_sweep.errors import EcgSweepError

app = typer.Typer(
    help="Optuna sweeps with MLflow tracking for deep-learning ECG diagnosis on PTB-XL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cli.app, name="data")

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="ECG_SWEEP_DEBUG", help="Show tracebacks for errors."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    for noisy in ("alembic", "urllib3", "git", "matplotlib", "PIL", "numexpr", "mlflow", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow draws tqdm bars on artifact downloads; our output has its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _register_commands() -> None:
    # Imported here so `ecg-sweep data ...` does not pay for torch/mlflow imports it never uses.
    from ecg_sweep.cli import commands

    commands.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    _register_commands()
    try:
        app(args=argv, prog_name="ecg-sweep")
    except EcgSweepError as e:
        if _state["debug"] or os.environ.get("ECG_SWEEP_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
