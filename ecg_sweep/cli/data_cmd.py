"""``ecg-sweep data ...``: synthesize, download and inspect PTB-XL folders; manage the cache."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ecg_sweep.cli._common import console, out, path_or_none, progress_bar
from ecg_sweep.cli.options import CacheDir, SamplingRate, Task, Workers

__all__ = ["app"]

app = typer.Typer(
    help="Create, download and check PTB-XL dataset folders; list and prune the signal cache.",
    no_args_is_help=True,
)


@app.command("synth")
def synth(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to create (must not exist or be empty).")
    ],
    n_records: Annotated[
        int, typer.Option("--n-records", help="Number of records (>= 10).")
    ] = 2000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")
    ] = 0,
    difficulty: Annotated[
        float, typer.Option("--difficulty", help="0 = obvious class signatures, 1 = very hard.")
    ] = 0.5,
    workers: Workers = None,
    label_noise: Annotated[
        float | None,
        typer.Option(
            "--label-noise",
            help="Fraction of labelled findings drawn WITHOUT their signal signature, as in real "
            "PTB-XL (about 0.2 there). Default: the fraction --difficulty implies.",
        ),
    ] = None,
    normal_variants: Annotated[
        float,
        typer.Option(
            "--normal-variants",
            help="Fraction of NORM-only records carrying a benign variant that resembles a "
            "finding (early repolarization, high voltage, rSr' in V1, ...): confounders.",
        ),
    ] = 0.0,
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
            label_noise=label_noise,
            normal_variants=normal_variants,
        )
    counts = ", ".join(f"{k} {v}" for k, v in summary.class_counts.items())
    out.print(
        f"wrote {summary.n_records} records ({summary.n_labelled} labelled: {counts}) to "
        f"{summary.root} in {summary.seconds:.1f} s; "
        f"{summary.n_findings_without_signature}/{summary.n_findings} findings without their "
        f"signature, {summary.n_normal_variants} normal records with a benign variant"
    )


@app.command("download")
def download(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to extract PTB-XL 1.0.3 into.")
    ] = Path("ptb-xl-1.0.3"),
    url: Annotated[
        str | None,
        typer.Option("--url", help="Override the PhysioNet URL (a mirror of the same zip)."),
    ] = None,
    sums_sha256: Annotated[
        str | None,
        typer.Option(
            "--sums-sha256",
            help="Expected SHA-256 of the zip's SHA256SUMS.txt (default: the value pinned for "
            "PTB-XL 1.0.3, else that of the list PhysioNet publishes beside the zip). Every "
            "extracted file is checked against that list.",
        ),
    ] = None,
) -> None:
    """Download PTB-XL 1.0.3 from PhysioNet (resumable), verify every file, extract atomically."""
    from ecg_sweep.data.download import PTBXL_URL, download_ptbxl

    root = download_ptbxl(
        out_dir, url or PTBXL_URL, show_progress=console.is_terminal, sums_sha256=sums_sha256
    )
    out.print(f"PTB-XL ready at {root}  (use --data-dir {root})")


@app.command("inspect")
def inspect(
    root: Annotated[Path, typer.Argument(help="PTB-XL root folder.")],
    sampling_rate: SamplingRate = 100,
    task: Task = "superdiagnostic",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workers: Workers = None,
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


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def _ago(t: float) -> str:
    s = max(time.time() - t, 0)
    for unit, secs in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= secs:
            return f"{s / secs:.0f} {unit} ago"
    return "just now"


@app.command("cache")
def cache(
    list_: Annotated[
        bool,
        typer.Option(
            "--list", help="List the cache entries (the default when no action is given)."
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove entries whose dataset changed or is gone, unreadable entries, entries "
            "of older versions and leftovers of crashed builds.",
        ),
    ] = False,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            help="With --prune: also remove current entries not used for this many days.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --prune: only print what would be removed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """List the decoded-signal cache, or prune entries no dataset uses any more."""
    from ecg_sweep.data.cache import default_cache_dir, list_entries, prune_cache
    from ecg_sweep.errors import ConfigError

    if list_ and prune:
        raise ConfigError("--list and --prune are exclusive: give one of them")
    if (older_than is not None or dry_run) and not prune:
        raise ConfigError("--older-than and --dry-run only go with --prune")
    folder = path_or_none(cache_dir) or default_cache_dir()
    if prune:
        removed = prune_cache(
            folder,
            older_than_s=None if older_than is None else older_than * 86400,
            dry_run=dry_run,
        )
        verb = "would remove" if dry_run else "removed"
        if as_json:
            out.print(json.dumps([e.as_dict() for e in removed], indent=2), markup=False)
            return
        for e in removed:
            out.print(f"{verb} {e.path}  ({_size(e.size_bytes)}, {e.status})", markup=False)
        total = sum(e.size_bytes for e in removed)
        out.print(f"{verb} {len(removed)} item(s), {_size(total)} in {folder}", markup=False)
        return
    entries = list_entries(folder)
    if as_json:
        out.print(json.dumps([e.as_dict() for e in entries], indent=2), markup=False)
        return
    if not entries:
        out.print(f"no cache entries in {folder}", markup=False)
        return
    table = Table(title=f"signal cache {folder}")
    for col in ("entry", "dataset", "Hz", "records", "bad", "size", "last used", "status"):
        table.add_column(
            col, justify="right" if col in ("Hz", "records", "bad", "size") else "left"
        )
    for e in entries:
        table.add_row(
            escape(e.path.name),
            escape(e.root or ""),
            "" if e.sampling_rate is None else str(e.sampling_rate),
            "" if e.records is None else str(e.records),
            "" if e.bad_records is None else str(e.bad_records),
            _size(e.size_bytes),
            _ago(e.last_used),
            escape(e.status),
        )
    out.print(table)
    stale = [e for e in entries if e.removable]
    out.print(
        f"{len(entries)} entries, {_size(sum(e.size_bytes for e in entries))}; "
        f"{len(stale)} removable ({_size(sum(e.size_bytes for e in stale))}) with --prune",
        markup=False,
    )
