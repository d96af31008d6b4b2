"""``promote``, ``predict``, ``compare`` and ``ui``: the MLflow registry side of the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.measure import Measurement
from rich.table import Table

from ecg_sweep.cli._common import console, out

TrackingOpt = typer.Option(
    None,
    "--tracking-uri",
    help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
)


def promote_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model family; promotes in ecg-<model>."),
    version: str = typer.Option(
        None, "--version", help="Version to promote (default: challenger)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Promote even if it does not beat the champion."
    ),
    tracking_uri: str = TrackingOpt,
) -> None:
    """Move the `champion` alias to a version if it beats the champion on test macro AUROC."""
    from ecg_sweep.models import get_model_spec
    from ecg_sweep.registry import promote
    from ecg_sweep.tracking import Tracker

    get_model_spec(model)
    tracker = Tracker(tracking_uri, f"ecg-{model}")
    r = promote(tracker, model, version, force)
    prev = (
        f"; previous champion version {r['previous']} ({r['previous_test_macro_auc']:.4f})"
        if r["previous"]
        else ""
    )
    out.print(
        f"{r['name']} version {r['version']} is champion (test macro AUROC "
        f"{r['test_macro_auc']:.4f}){prev}: models:/{r['name']}@champion"
    )


def predict_cmd(
    records: list[Path] = typer.Argument(..., help="WFDB records (path with or without .hea)."),
    model_uri: str = typer.Option(
        ..., "--model-uri", help="models:/ecg-<model>@champion, runs:/..., or a checkpoint path."
    ),
    output: Path = typer.Option(
        None, "--output", help="Write predictions to FILE.csv or FILE.json."
    ),
    tracking_uri: str = TrackingOpt,
) -> None:
    """Per-class probabilities and predicted labels for WFDB records."""
    import mlflow

    from ecg_sweep.errors import ConfigError
    from ecg_sweep.model_io import load_model
    from ecg_sweep.registry import predict_records
    from ecg_sweep.tracking import Tracker

    if output is not None and output.suffix not in (".csv", ".json"):
        raise ConfigError(f"--output {output}: must end in .csv or .json")
    if ":/" in model_uri:
        tracker = Tracker(tracking_uri, "Default")  # fails fast if the store is unreachable
        mlflow.set_tracking_uri(tracker.uri)
        mlflow.set_registry_uri(tracker.uri)
    model, info = load_model(model_uri)
    preds = predict_records(model, info, [str(r) for r in records])
    table = Table(
        title=f"{model_uri} ({info.model}, {info.sampling_rate} Hz)", title_justify="left"
    )
    table.add_column("record")
    for c in info.classes:
        table.add_column(c, justify="right")
    table.add_column("labels")
    for p in preds:
        table.add_row(
            Path(p.record).name,
            *(f"{p.probabilities[c]:.3f}" for c in info.classes),
            ", ".join(p.labels) or "-",
        )
    out.print(table)
    if output is not None:
        rows = [
            {"record": p.record, **p.probabilities, "labels": ";".join(p.labels)} for p in preds
        ]
        if output.suffix == ".json":
            output.write_text(json.dumps(rows, indent=2))
        else:
            with open(output, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        console.print(f"wrote {len(rows)} predictions to {output}")


def compare_cmd(
    experiment: list[str] = typer.Option(
        None, "--experiment", help="Experiment(s) to compare (default: every ecg-* experiment)."
    ),
    output: Path = typer.Option(None, "--output", help="Write report.md (+ .png) or report.html."),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard as JSON."),
    tracking_uri: str = TrackingOpt,
) -> None:
    """Leaderboard of studies across model families: AUROC with CI, F1, size, latency, time."""
    from ecg_sweep.compare import COLUMNS, cells, leaderboard, rows_as_dicts, write_report

    rows = leaderboard(tracking_uri, experiment or None)
    if as_json:
        out.print(json.dumps(rows_as_dicts(rows), indent=2, default=str), markup=False)
    else:
        title = "ecg-sweep leaderboard (best trial of each study; test fold)"
        table = Table(title=title, title_justify="left")
        for name, _, _ in COLUMNS:
            table.add_column(name, no_wrap=True)
        for r in rows:
            table.add_row(*cells(r))
        if Measurement.get(out, out.options.update_width(10_000), table).maximum <= out.width:
            out.print(table)
        else:  # too narrow for 14 columns (or output not a terminal): one column per study
            table = Table(title=title, title_justify="left")
            table.add_column("")
            for r in rows:
                table.add_column(r.study)
            all_cells = [cells(r) for r in rows]
            for i, (name, _, _) in enumerate(COLUMNS):
                table.add_row(name, *(c[i] for c in all_cells))
            out.print(table)
        if not rows:
            out.print("no studies found: run `ecg-sweep optimize --model M` first")
    if output is not None:
        written = write_report(rows, output)
        console.print(f"wrote {', '.join(map(str, written))}")


def ui_cmd(
    tracking_uri: str = TrackingOpt,
    port: int = typer.Option(5000, "--port", help="Port on 127.0.0.1."),
) -> None:
    """Start the MLflow UI on 127.0.0.1 for the local store (Ctrl-C stops it)."""
    from ecg_sweep.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {uri} at http://127.0.0.1:{port}  (Ctrl-C to stop)")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    try:
        raise typer.Exit(
            subprocess.call(cmd, env={**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"})
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
