"""``ecg-sweep models`` and ``ecg-sweep train``: the model zoo and one tracked training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ecg_sweep.cli._common import ProgressDisplay, out, parse_set_options, prepare_data
from ecg_sweep.cli.options import (
    CacheDir,
    Calibrate,
    DataDir,
    Device,
    Experiment,
    Model,
    OnBadRecord,
    Preset,
    SamplingRate,
    Seed,
    SystemMetrics,
    Task,
    Teacher,
    ThresholdPolicy,
    TrackingUri,
    TrustPickle,
)

__all__ = ["models_cmd", "train_cmd"]


def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sampling_rate: SamplingRate = 100,
) -> None:
    """List the registered models, their default configuration and their search space."""
    from ecg_sweep.models import SpaceContext, get_model_spec, list_models
    from ecg_sweep.models.space import space_to_dict

    ctx = SpaceContext(n_samples=10 * sampling_rate)
    report = {}
    for name in list_models():
        spec = get_model_spec(name)
        report[name] = {
            "description": spec.description,
            "defaults": dict(spec.defaults),
            "train_defaults": dict(spec.train_defaults),
            "presets": {k: dict(v) for k, v in spec.presets.items()},
            "search_space": space_to_dict(
                spec.search_space(SpaceContext(n_samples=ctx.n_samples, has_teacher=spec.distilled))
            ),
        }
    if as_json:
        out.print(json.dumps(report, indent=2), markup=False)
        return
    for name, r in report.items():
        table = Table(title=f"{name}: {r['description']}", title_justify="left")
        table.add_column("parameter")
        table.add_column("default")
        table.add_column("search space")
        keys = list(r["defaults"]) + [k for k in r["search_space"] if k not in r["defaults"]]
        for k in keys:
            default = r["defaults"].get(k, r["train_defaults"].get(k, ""))
            dim = r["search_space"].get(k)
            if dim is None:
                space = "fixed"
            elif dim["type"] == "categorical":
                space = " | ".join(map(str, dim["choices"]))
            else:
                space = f"{dim['low']} .. {dim['high']}" + (" (log)" if dim.get("log") else "")
            table.add_row(k, str(default), space)
        out.print(table)
        if r["presets"]:
            out.print(f"  presets: {', '.join(f'{k} {v}' for k, v in r['presets'].items())}")


def train_cmd(
    model: Model,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a model or training parameter: key=value (repeatable)."
        ),
    ] = None,
    preset: Preset = None,
    max_epochs: Annotated[int, typer.Option("--max-epochs", help="Upper bound on epochs.")] = 20,
    teacher: Teacher = None,
    trust_pickle: TrustPickle = False,
    threshold_policy: ThresholdPolicy = None,
    calibrate: Calibrate = None,
    pretrained_weights: Annotated[
        Path | None,
        typer.Option(
            "--pretrained-weights", help="Local weights file for the backbone (no downloads)."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="Where to keep the best checkpoint (default: a temp file)."
        ),
    ] = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sampling_rate: SamplingRate = 100,
    task: Task = "superdiagnostic",
    on_bad_record: OnBadRecord = "error",
    device: Device = "auto",
    seed: Seed = 0,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
    system_metrics: SystemMetrics = False,
) -> None:
    """Train one model and log it to MLflow (params, per-epoch curves, test metrics, model)."""
    from ecg_sweep.config import split_params
    from ecg_sweep.engine import resolve_device
    from ecg_sweep.models import get_model_spec, make_train_config
    from ecg_sweep.tracking.client import Tracker, mask_url
    from ecg_sweep.tracking.contract import experiment_name
    from ecg_sweep.tracking.training_run import train_and_log

    spec = get_model_spec(model)
    model_over, train_over = split_params(parse_set_options(model, sets or []))
    if threshold_policy is not None:
        train_over["threshold_policy"] = threshold_policy
    if calibrate is not None:
        train_over["calibrate"] = calibrate
    params = spec.params(preset, **model_over)
    cfg = make_train_config(
        model, **{"max_epochs": max_epochs, "seed": seed, "device": device, **train_over}
    )
    resolve_device(cfg.device)  # fail before loading data
    tracker = Tracker(tracking_uri, experiment_name(model, experiment))
    data = prepare_data(data_dir, cache_dir, sampling_rate, task, on_bad_record)
    with ProgressDisplay() as display:
        result = train_and_log(
            data,
            model,
            params,
            cfg,
            tracker,
            teacher=teacher,
            trust_pickle=trust_pickle,
            pretrained_weights=pretrained_weights,
            checkpoint=checkpoint,
            system_metrics=system_metrics,
            progress=display.hook("train"),
        )
    m = result.metrics
    out.print(
        f"test macro AUROC {m['test_macro_auc']:.4f} [{m['test_macro_auc_ci_low']:.4f}, "
        f"{m['test_macro_auc_ci_high']:.4f}], macro F1 {m['test_macro_f1']:.4f}, exact-match "
        f"{m['test_exact_match_accuracy']:.4f}, best epoch {result.fit.best_epoch} "
        f"({result.fit.train_samples_per_s:.0f} samples/s on {result.fit.device})"
    )
    out.print(
        f"MLflow run {result.run_id} in experiment {tracker.experiment_name!r} "
        f"({mask_url(tracker.uri)})"
    )
    if result.model_uri:
        out.print(f"model: {result.model_uri}")
