"""Top-level commands: models, train, optimize, compress, compare, promote, predict, ui."""

from __future__ import annotations

import json
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
    path_or_none,
    progress_bar,
)

DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")
SeedOpt = typer.Option(0, "--seed", help="Random seed.")
TrackingOpt = typer.Option(
    None,
    "--tracking-uri",
    help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
)
ExperimentOpt = typer.Option(None, "--experiment", help="MLflow experiment (default ecg-<model>).")
PresetOpt = typer.Option(None, "--preset", help="Named model preset, e.g. 'tiny' for quick checks.")


def prepare_data(
    data_dir: Path | None,
    cache_dir: Path | None,
    sampling_rate: int,
    task: str,
    on_bad_record: str,
    seed: int | None = None,
):
    """Build the DataConfig from CLI options and prepare the dataset once, with a progress bar."""
    from ecg_sweep.config import DataConfig
    from ecg_sweep.data.dataset import prepare

    cfg = DataConfig(
        root=path_or_none(data_dir),
        sampling_rate=sampling_rate,
        task=task,
        cache_dir=path_or_none(cache_dir),
        on_bad_record=on_bad_record,
    )
    with progress_bar("decoding records (once; cached)") as progress:
        data = prepare(cfg, progress)
    console.print(
        f"data: {data.root} @ {data.sampling_rate} Hz, train {len(data.train)} / val "
        f"{len(data.val)} / test {len(data.test)}, classes {', '.join(data.classes)}"
    )
    return data


def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    sampling_rate: int = SamplingRateOpt,
) -> None:
    """List the registered models, their default configuration and their search space."""
    from ecg_sweep.models import SpaceContext, get_model_spec, list_models
    from ecg_sweep.models._space import space_to_dict

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
    model: str = typer.Option(..., "--model", "-m", help="Model family (see `ecg-sweep models`)."),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a model or training parameter: key=value (repeatable)."
    ),
    preset: str = PresetOpt,
    max_epochs: int = typer.Option(20, "--max-epochs", help="Upper bound on epochs."),
    teacher: str = typer.Option(
        None, "--teacher", help="DeiT teacher: a checkpoint path or an MLflow model URI."
    ),
    pretrained_weights: Path = typer.Option(
        None, "--pretrained-weights", help="Local weights file for the backbone (no downloads)."
    ),
    checkpoint: Path = typer.Option(
        None, "--checkpoint", help="Where to keep the best checkpoint (default: a temp file)."
    ),
    data_dir: Path = DataDirOpt,
    cache_dir: Path = CacheDirOpt,
    sampling_rate: int = SamplingRateOpt,
    task: str = TaskOpt,
    on_bad_record: str = OnBadOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    tracking_uri: str = TrackingOpt,
    experiment: str = ExperimentOpt,
) -> None:
    """Train one model and log it to MLflow (params, per-epoch curves, test metrics, model)."""
    from ecg_sweep.config import TRAIN_FIELDS
    from ecg_sweep.engine import resolve_device
    from ecg_sweep.models import get_model_spec
    from ecg_sweep.tracking import Tracker
    from ecg_sweep.training import make_train_config, parse_set_options, train_and_log

    spec = get_model_spec(model)
    overrides = parse_set_options(model, sets)
    train_over = {k: v for k, v in overrides.items() if k in TRAIN_FIELDS}
    model_over = {k: v for k, v in overrides.items() if k not in TRAIN_FIELDS}
    params = spec.params(preset, **model_over)
    cfg = make_train_config(
        model, **{"max_epochs": max_epochs, "seed": seed, "device": device, **train_over}
    )
    resolve_device(cfg.device)  # fail before loading data
    tracker = Tracker(tracking_uri, experiment or f"ecg-{model}")
    data = prepare_data(data_dir, cache_dir, sampling_rate, task, on_bad_record)
    result = train_and_log(
        data,
        model,
        params,
        cfg,
        tracker,
        teacher=teacher,
        pretrained_weights=pretrained_weights,
        checkpoint=checkpoint,
    )
    m = result.metrics
    out.print(
        f"test macro AUROC {m['test_macro_auc']:.4f} [{m['test_macro_auc_ci_low']:.4f}, "
        f"{m['test_macro_auc_ci_high']:.4f}], macro F1 {m['test_macro_f1']:.4f}, exact-match "
        f"{m['test_exact_match_accuracy']:.4f}, best epoch {result.fit.best_epoch} "
        f"({result.fit.train_samples_per_s:.0f} samples/s on {result.fit.device})"
    )
    out.print(
        f"MLflow run {result.run_id} in experiment {tracker.experiment_name!r} ({tracker.uri})"
    )
    if result.model_uri:
        out.print(f"model: {result.model_uri}")


def register(app: typer.Typer) -> None:
    """Attach every top-level command to ``app``."""
    app.command("models")(models_cmd)
    app.command("train")(train_cmd)
    from ecg_sweep.cli.optimize import optimize_cmd

    app.command("optimize")(optimize_cmd)
    from ecg_sweep.cli.registry import compare_cmd, predict_cmd, promote_cmd, ui_cmd

    app.command("promote")(promote_cmd)
    app.command("predict")(predict_cmd)
    app.command("compare")(compare_cmd)
    app.command("ui")(ui_cmd)
    from ecg_sweep.cli.compress import compress_cmd

    app.command("compress")(compress_cmd)
