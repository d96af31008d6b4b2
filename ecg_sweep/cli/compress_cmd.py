"""``ecg-sweep compress``: the best trial's model through every compression method, measured."""

from __future__ import annotations

from typing import Annotated

import typer

from ecg_sweep.cli._common import (
    compress_and_report,
    console,
    out,
    prepare_data,
    register_and_report,
)
from ecg_sweep.cli.options import (
    CacheDir,
    DataDir,
    Device,
    OnBadRecord,
    SamplingRate,
    Seed,
    Task,
    TrackingUri,
)

__all__ = ["compress_cmd", "resolve_target"]


def resolve_target(
    tracking_uri: str | None,
    experiment: str | None,
    run_id: str | None,
    study_name: str | None,
    model_uri: str | None = None,
):
    """(Tracker on the run's experiment, the run id) for ``--run-id``, ``--study-name`` or
    ``--model-uri``.

    A study resolves to its study run (by study-name tag) in ``experiment`` (all experiments
    when None) and then to the best trial run that the study run's tag names; a model URI
    (``models:/ecg-vit@champion``, ``models:/ecg-vit/3``, ``runs:/ID/model``) to the run
    that logged the model.
    """
    from mlflow import MlflowClient

    from ecg_sweep.errors import ConfigError
    from ecg_sweep.tracking.client import Tracker, mask_url, resolve_tracking_uri
    from ecg_sweep.tracking.contract import (
        BEST_RUN_ID_TAG,
        KIND_STUDY,
        KIND_TAG,
        STUDY_NAME_TAG,
    )

    if sum(map(bool, (run_id, study_name, model_uri))) != 1:
        raise ConfigError(
            "pass exactly one of --run-id ID, --study-name NAME or --model-uri models:/..."
        )
    uri = resolve_tracking_uri(tracking_uri)
    probe = Tracker(uri, experiment or "Default", check=False)  # no experiment is created
    probe.check_reachable()  # MLflow's client would retry an unreachable server for minutes
    client: MlflowClient = probe.client
    if model_uri:
        run_id = _model_source_run(model_uri, uri)
    if study_name:
        if "'" in study_name:
            raise ConfigError(f"--study-name {study_name!r}: quotes are not allowed")
        if experiment:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise ConfigError(
                    f"--experiment {experiment!r}: no such experiment at {mask_url(uri)}"
                )
            exp_ids = [exp.experiment_id]
        else:
            exp_ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            exp_ids,
            filter_string=(
                f"tags.`{KIND_TAG}` = '{KIND_STUDY}' and tags.`{STUDY_NAME_TAG}` = '{study_name}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            where = f"experiment {experiment!r}" if experiment else "any experiment"
            raise ConfigError(
                f"--study-name {study_name}: no study run in {where} at {mask_url(uri)}"
            )
        run_id = runs[0].data.tags.get(BEST_RUN_ID_TAG)
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


def _model_source_run(model_uri: str, tracking_uri: str) -> str:
    """The run that logged the model a URI names (a registry alias or version, a run's model)."""
    import mlflow

    from ecg_sweep.errors import ConfigError
    from ecg_sweep.tracking.client import mask_url, use_store

    if not model_uri.startswith(("models:/", "runs:/")):
        raise ConfigError(f"--model-uri {model_uri}: expected models:/NAME@ALIAS, models:/NAME/V "
                          "or runs:/ID/PATH")  # fmt: skip
    use_store(tracking_uri)
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"--model-uri {model_uri}: not found at {mask_url(tracking_uri)}: {mask_url(msg)[:200]}"
        ) from None
    if not info.run_id:
        raise ConfigError(f"--model-uri {model_uri}: the model names no run that logged it")
    return info.run_id


def compress_cmd(
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="The run whose model to compress: a completed trial or an `ecg-sweep train` run.",
        ),
    ] = None,
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model-uri",
            help="Compress a registered or logged model (models:/ecg-vit@champion, runs:/ID/model);"
            " the runs nest under the run that logged it.",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option(
            "--study-name", help="Compress the best trial of this study (its best_run_id)."
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated methods (default: all; fp32 always runs). "
            "See the list with --methods help.",
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", help="CPU threads for every timed variant.")
    ] = 2,
    finetune_epochs: Annotated[
        int,
        typer.Option(
            "--finetune-epochs", help="fit() epochs after structured pruning and for QAT."
        ),
    ] = 3,
    calibration_batches: Annotated[
        int,
        typer.Option(
            "--calibration-batches", help="Training batches used to calibrate static int8."
        ),
    ] = 8,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Then register the model and the recommended variant as ecg-<model> "
            "(alias challenger), as optimize does: the last step after several workers "
            "ran optimize --no-compress --no-register.",
        ),
    ] = False,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sampling_rate: SamplingRate = 100,
    task: Task = "superdiagnostic",
    on_bad_record: OnBadRecord = "error",
    device: Device = "auto",
    seed: Seed = 0,
    tracking_uri: TrackingUri = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment", help="MLflow experiment of the run/study (default: search all)."
        ),
    ] = None,
) -> None:
    """Prune, quantize and export a model; measure size, latency and accuracy of each.

    The model of a trial, a `train` run or a registered version. Every method is a nested
    MLflow run compress-<method> under the run that logged the model; the table is
    printed and logged (markdown + CSV) with a size/latency/AUROC plot.
    """
    from ecg_sweep.compression import METHODS, resolve_methods
    from ecg_sweep.config import CompressConfig
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
    tracker, best_run_id = resolve_target(tracking_uri, experiment, run_id, study_name, model_uri)
    data = prepare_data(data_dir, cache_dir, sampling_rate, task, on_bad_record)
    console.print(
        f"compressing run {best_run_id} of experiment {tracker.experiment_name!r} "
        f"({len(chosen)} methods, {threads} threads)"
    )
    report = compress_and_report(tracker, best_run_id, data, cfg)
    if register:
        register_and_report(tracker, best_run_id, report.model, data, include_compressed=True)
