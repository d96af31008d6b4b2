"""``ecg-sweep compress``: the best trial's model through every compression method, measured."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from ecg_sweep.cli._common import (
    CacheDirOpt,
    DataDirOpt,
    OnBadOpt,
    SamplingRateOpt,
    TaskOpt,
    console,
    out,
)

__all__ = ["compress_cmd", "compress_and_report", "print_report", "resolve_target"]

_STUDY_FILTER = "tags.`ecg_sweep.kind` = 'study' and tags.`optuna.study_name` = '{name}'"


def resolve_target(
    tracking_uri: str | None,
    experiment: str | None,
    run_id: str | None,
    study_name: str | None,
):
    """(Tracker on the run's experiment, the trial run id) for ``--run-id`` or ``--study-name``.

    A study resolves to its parent run (tag ``optuna.study_name``, kind ``study``) in
    ``experiment`` (all experiments when None) and then to that run's ``best_run_id`` tag.
    """
    from mlflow import MlflowClient

    from ecg_sweep.errors import ConfigError
    from ecg_sweep.tracking import Tracker, mask_url, resolve_tracking_uri

    if bool(run_id) == bool(study_name):
        raise ConfigError("pass exactly one of --run-id ID or --study-name NAME")
    uri = resolve_tracking_uri(tracking_uri)
    probe = Tracker(uri, experiment or "Default", check=False)  # no experiment is created
    client: MlflowClient = probe.client
    if study_name:
        if "'" in study_name:
            raise ConfigError(f"--study-name {study_name!r}: quotes are not allowed")
        if experiment:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise ConfigError(f"--experiment {experiment!r}: no such experiment at {uri}")
            exp_ids = [exp.experiment_id]
        else:
            exp_ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            exp_ids,
            filter_string=_STUDY_FILTER.format(name=study_name),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            where = f"experiment {experiment!r}" if experiment else "any experiment"
            raise ConfigError(
                f"--study-name {study_name}: no study run in {where} at {mask_url(uri)}"
            )
        run_id = runs[0].data.tags.get("best_run_id")
        if not run_id:
            raise ConfigError(
                f"--study-name {study_name}: the study has no best trial yet (no completed trial)"
            )
    try:
        run = client.get_run(run_id)
    except Exception:
        raise ConfigError(f"--run-id {run_id}: no such run at {mask_url(uri)}") from None
    exp_name = client.get_experiment(run.info.experiment_id).name
    if experiment and experiment != exp_name:
        raise ConfigError(
            f"--run-id {run_id} belongs to experiment {exp_name!r}, not --experiment {experiment!r}"
        )
    return Tracker(uri, exp_name), run_id


def _fmt(value: float, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:{spec}}"
    )


def print_report(report) -> None:
    """The summary table on stdout, then the recommended variant and where everything is.

    A wide terminal gets a rich table; pipes, logs and narrow terminals the markdown table
    (rich would squeeze 14 columns into 80 characters of ellipses).
    """
    from ecg_sweep.compression.run import MAX_AUC_DROP

    if not (out.is_terminal and out.width >= 150):
        out.print(report.to_markdown(), markup=False, highlight=False)
        _print_footer(report, MAX_AUC_DROP)
        return
    t = report.table()
    table = Table(
        title=f"compression of {report.model} (trial run {report.best_run_id}, "
        f"{report.config.threads} threads)",
        title_justify="left",
    )
    cols = [
        ("method", "method", "s"),
        ("size MB", "size_MB", ".3f"),
        ("size x", "size_ratio", ".3f"),
        ("params M", "params_M", ".3f"),
        ("nonzero", "nonzero", ".2f"),
        ("p50 bs1 ms", "p50_bs1_ms", ".2f"),
        ("p95 bs1 ms", "p95_bs1_ms", ".2f"),
        ("p50 bs32 ms", "p50_bs32_ms", ".1f"),
        ("speedup", "speedup_bs1", ".2f"),
        ("test AUROC", "test_auc", ".4f"),
        ("Δ AUROC", "test_auc_delta", "+.4f"),
        ("test F1", "test_f1", ".4f"),
        ("Δ F1", "test_f1_delta", "+.4f"),
    ]
    for header, _, _ in cols:
        table.add_column(header, justify="left" if header == "method" else "right")
    table.add_column("note")
    for _, r in t.iterrows():
        if r["status"] != "ok":
            table.add_row(r["method"], *["-"] * (len(cols) - 1), f"{r['status']}: {r['note']}")
            continue
        table.add_row(*[_fmt(r[key], spec) for _, key, spec in cols], r["runtime"])
    out.print(table)
    _print_footer(report, MAX_AUC_DROP)


def _print_footer(report, max_drop: float) -> None:
    out.print(
        f"recommended int8 variant (fastest within {max_drop} validation AUROC of fp32): "
        f"{report.recommended or 'none'}"
    )
    out.print(
        "summary: artifacts compression/summary.md, summary.csv, tradeoff.png of run "
        f"{report.best_run_id}; one nested run compress-<method> per method"
    )


def compress_and_report(tracker, best_run_id: str, data, device: str = "cpu"):
    """Compress ``best_run_id`` with every method (defaults), print the table, return the report.

    Called by ``ecg-sweep optimize`` after its study unless ``--no-compress``.
    """
    from ecg_sweep.compression import compress_run

    console.print(f"compressing the best trial's model (run {best_run_id}) ...")
    report = compress_run(tracker, best_run_id, data, device=device)
    print_report(report)
    return report


def compress_cmd(
    run_id: str = typer.Option(
        None, "--run-id", help="The trial run to compress (one with a checkpoint artifact)."
    ),
    study_name: str = typer.Option(
        None, "--study-name", help="Compress the best trial of this study (its best_run_id)."
    ),
    methods: str = typer.Option(
        None,
        "--methods",
        help="Comma-separated methods (default: all; fp32 always runs). "
        "See the list with --methods help.",
    ),
    threads: int = typer.Option(2, "--threads", help="CPU threads for every timed variant."),
    finetune_epochs: int = typer.Option(
        3, "--finetune-epochs", help="fit() epochs after structured pruning and for QAT."
    ),
    calibration_batches: int = typer.Option(
        8, "--calibration-batches", help="Training batches used to calibrate static int8."
    ),
    data_dir: Path = DataDirOpt,
    cache_dir: Path = CacheDirOpt,
    sampling_rate: int = SamplingRateOpt,
    task: str = TaskOpt,
    on_bad_record: str = OnBadOpt,
    device: str = typer.Option(
        "auto", "--device", help="Where fine-tuning and QAT train: auto, cpu or cuda[:N]."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (calibration batches, fine-tuning)."),
    tracking_uri: str = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
    ),
    experiment: str = typer.Option(
        None, "--experiment", help="MLflow experiment of the run/study (default: search all)."
    ),
) -> None:
    """Prune, quantize and export a trial's model; measure size, latency and accuracy of each.

    Every method is a nested MLflow run compress-<method> under the trial's run; the table is
    printed and logged (markdown + CSV) with a size/latency/AUROC plot.
    """
    from ecg_sweep.cli.commands import prepare_data
    from ecg_sweep.compression import METHODS, CompressConfig, compress_run, resolve_methods
    from ecg_sweep.engine import resolve_device

    if methods is not None and methods.strip() == "help":
        for m in METHODS.values():
            out.print(f"{m.name:28s} {m.description}", markup=False)
        return
    names = tuple(n.strip() for n in methods.split(",") if n.strip()) if methods else None
    cfg = CompressConfig(
        methods=names,
        threads=threads,
        finetune_epochs=finetune_epochs,
        calibration_batches=calibration_batches,
        seed=seed,
        device=str(resolve_device(device)),
    )
    chosen = resolve_methods(cfg.methods)  # unknown names fail before any data is read
    tracker, best_run_id = resolve_target(tracking_uri, experiment, run_id, study_name)
    data = prepare_data(data_dir, cache_dir, sampling_rate, task, on_bad_record)
    console.print(
        f"compressing run {best_run_id} of experiment {tracker.experiment_name!r} "
        f"({len(chosen)} methods, {threads} threads)"
    )
    report = compress_run(tracker, best_run_id, data, config=cfg)
    print_report(report)
