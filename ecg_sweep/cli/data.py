"""``ecg-sweep data ...``: synthesize, download and inspect PTB-XL folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ecg_sweep.cli._common import SamplingRateOpt, TaskOpt, WorkersOpt, console, out, progress_bar

app = typer.Typer(help="Create, download and check PTB-XL dataset folders.", no_args_is_help=True)


@app.command("synth")
def synth(
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder to create (must not exist or be empty)."
    ),
    n_records: int = typer.Option(2000, "--n-records", help="Number of records (>= 10)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    difficulty: float = typer.Option(
        0.5, "--difficulty", help="0 = obvious class signatures, 1 = very hard."
    ),
    workers: int | None = WorkersOpt,
) -> None:
    """Write a synthetic PTB-XL dataset in the real layout (CSVs + WFDB records at 100/500 Hz)."""
    from ecg_sweep.data.synth import synthesize

    with progress_bar("synthesizing") as progress:
        summary = synthesize(
            out_dir,
            n_records=n_records,
            seed=seed,
            difficulty=difficulty,
            workers=workers,
            progress=progress,
        )
    counts = ", ".join(f"{k} {v}" for k, v in summary.class_counts.items())
    out.print(
        f"wrote {summary.n_records} records ({summary.n_labelled} labelled: {counts}) to "
        f"{summary.root} in {summary.seconds:.1f} s"
    )


@app.command("download")
def download(
    out_dir: Path = typer.Option(
        Path("ptb-xl-1.0.3"), "--out", help="Folder to extract PTB-XL 1.0.3 into."
    ),
    url: str = typer.Option(
        None, "--url", help="Override the PhysioNet URL (a mirror of the same zip)."
    ),
) -> None:
    """Download PTB-XL 1.0.3 from PhysioNet (resumable), verify every file, extract atomically."""
    from ecg_sweep.data.download import PTBXL_URL, download_ptbxl

    root = download_ptbxl(out_dir, url or PTBXL_URL, show_progress=console.is_terminal)
    out.print(f"PTB-XL ready at {root}  (use --data-dir {root})")


@app.command("inspect")
def inspect(
    root: Path = typer.Argument(..., help="PTB-XL root folder."),
    sampling_rate: int = SamplingRateOpt,
    task: str = TaskOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    workers: int | None = WorkersOpt,
) -> None:
    """Count records per fold and class and validate every record. Exit 1 if any is bad."""
    from ecg_sweep.data.inspect import inspect_dataset

    with progress_bar("validating records") as progress:
        report = inspect_dataset(root, sampling_rate, task, workers, progress)
    if as_json:
        out.print(json.dumps(report, indent=2), markup=False)
    else:
        table = Table(title=f"{report['root']} @ {report['sampling_rate']} Hz")
        table.add_column("fold")
        table.add_column("labelled records", justify="right")
        for fold, n in report["folds"].items():
            table.add_row(fold, str(n))
        out.print(table)
        classes = Table(title=f"{task} classes (records may carry several)")
        classes.add_column("class")
        classes.add_column("records", justify="right")
        for c, n in report["classes"].items():
            classes.add_row(c, str(n))
        out.print(classes)
        out.print(f"records: {report['records']}, labelled: {report['labelled']}")
        for b in report["bad_records"]:
            out.print(f"bad record {b['ecg_id']}: {b['path']}: {b['error']}", markup=False)
        for w in report["warnings"]:
            out.print(f"warning: record {w['ecg_id']}: {w['path']}: {w['warning']}", markup=False)
    if report["bad_records"]:
        console.print(f"{len(report['bad_records'])} bad record(s) in {report['root']}")
        raise typer.Exit(1)
