"""``ecg-sweep compare``: a leaderboard of studies across model families, from MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.measure import Measurement
from rich.table import Table

from ecg_sweep.cli._common import console, out
from ecg_sweep.cli.options import TrackingUri

__all__ = ["compare_cmd"]


def compare_cmd(
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment", help="Experiment(s) to compare (default: every ecg-* experiment)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write report.md (+ .png) or report.html."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the leaderboard as JSON.")] = False,
    tracking_uri: TrackingUri = None,
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
        from ecg_sweep.tracking.client import resolve_tracking_uri

        written = write_report(rows, output, resolve_tracking_uri(tracking_uri))
        console.print(f"wrote {', '.join(map(str, written))}")
