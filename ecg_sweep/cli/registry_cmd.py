"""``ecg-sweep promote`` and ``ecg-sweep predict``: the MLflow model registry side of the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ecg_sweep.cli._common import console, out
from ecg_sweep.cli.options import MaxLatencyMs, TrackingUri, TrustPickle

__all__ = ["predict_cmd", "promote_cmd"]


def promote_cmd(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model family; promotes in ecg-<model>.")
    ],
    version: Annotated[
        str | None, typer.Option("--version", help="Version to promote (default: challenger).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the champion.")
    ] = False,
    tracking_uri: TrackingUri = None,
    max_latency_ms: MaxLatencyMs = None,
) -> None:
    """Move the `champion` alias to a version if it beats the champion on test macro AUROC
    (and, with --max-latency-ms, if its measured latency is within the budget)."""
    from ecg_sweep.models import get_model_spec
    from ecg_sweep.registry import promote
    from ecg_sweep.tracking.client import Tracker
    from ecg_sweep.tracking.contract import CHAMPION, experiment_name

    get_model_spec(model)
    tracker = Tracker(tracking_uri, experiment_name(model))
    r = promote(tracker, model, version, force, max_latency_ms)
    prev = (
        f"; previous champion version {r['previous']} ({r['previous_test_macro_auc']:.4f})"
        if r["previous"]
        else ""
    )
    out.print(
        f"{r['name']} version {r['version']} is champion (test macro AUROC "
        f"{r['test_macro_auc']:.4f}){prev}: models:/{r['name']}@{CHAMPION}"
    )


def predict_cmd(
    records: Annotated[
        list[Path], typer.Argument(help="WFDB records (path with or without .hea).")
    ],
    model_uri: Annotated[
        str,
        typer.Option(
            "--model-uri", help="models:/ecg-<model>@champion, runs:/..., or a checkpoint path."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write predictions to FILE.csv or FILE.json."),
    ] = None,
    tracking_uri: TrackingUri = None,
    trust_pickle: TrustPickle = False,
) -> None:
    """Per-class probabilities and predicted labels for WFDB records."""

    from ecg_sweep.errors import ConfigError
    from ecg_sweep.registry import predict_records
    from ecg_sweep.tracking.client import Tracker, use_store
    from ecg_sweep.tracking.model_store import load_model

    if output is not None and output.suffix not in (".csv", ".json"):
        raise ConfigError(f"--output {output}: must end in .csv or .json")
    if ":/" in model_uri:
        tracker = Tracker(tracking_uri, "Default")  # fails fast if the store is unreachable
        use_store(tracker.uri)
    model, info = load_model(model_uri, trust_pickle)
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
