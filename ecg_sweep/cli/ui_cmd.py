"""``ecg-sweep ui``: the MLflow UI on 127.0.0.1 for the local store."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from ecg_sweep.cli._common import console
from ecg_sweep.cli.options import Port, TrackingUri

__all__ = ["ui_cmd"]


def ui_cmd(
    tracking_uri: TrackingUri = None,
    port: Port = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 for the local store (Ctrl-C stops it)."""
    from ecg_sweep.tracking.client import mask_url, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {mask_url(uri)} at http://127.0.0.1:{port}  (Ctrl-C to stop)")
    # The store URI goes by environment, not argv: any user on the machine can read an argv.
    env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_BACKEND_STORE_URI": uri}
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    try:
        raise typer.Exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
