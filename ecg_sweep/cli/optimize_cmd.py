"""``ecg-sweep optimize``: an Optuna study over one model family, tracked in MLflow."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ecg_sweep.cli._common import (
    ProgressDisplay,
    compress_and_report,
    console,
    out,
    parse_set_options,
    prepare_data,
    register_and_report,
)
from ecg_sweep.cli.options import (
    CacheDir,
    Calibrate,
    CostProbe,
    DataDir,
    Device,
    Experiment,
    MaxCostRatio,
    MaxEpochSeconds,
    MaxLatencyMs,
    MaxSizeMb,
    Model,
    OnBadRecord,
    Preset,
    SamplingRate,
    Seed,
    Storage,
    SystemMetrics,
    Task,
    Teacher,
    ThresholdPolicy,
    TrackingUri,
    TrustPickle,
)

__all__ = ["optimize_cmd"]


class ConsoleReporter:
    """Live per-epoch and per-trial lines on stderr (works in terminals and in CI logs), and
    progress inside epochs (a bar per running trial in a terminal, periodic lines otherwise)."""

    def __init__(self, n_trials: int | None, display: ProgressDisplay | None = None):
        self.n_trials = n_trials
        self.t0 = time.monotonic()
        self.display = display

    def progress(self, number, what, done, total):
        if self.display is not None:
            self.display.update(f"trial {number}", f"trial {number} {what}", done, total)

    def trial_started(self, number, params):
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        console.print(f"[bold]trial {number}[/] {shown}", highlight=False)

    def cost(self, number, cost, infeasible):
        parts = [f"{cost.params / 1e6:.2f} M params"]
        if cost.size_bytes_int8 is not None:
            parts.append(
                f"int8 {cost.size_bytes_int8 / 1e6:.2f} MB, {cost.latency_ms_int8:.2f} ms "
                f"(fp32 {cost.latency_ms_fp32:.2f} ms) at batch 1"
            )
        parts.append(
            f"~{cost.epoch_seconds:.1f} s per epoch (measured in {cost.probe_seconds:.1f} s)"
        )
        console.print(f"  trial {number} cost: {', '.join(parts)}", style="dim", highlight=False)
        if infeasible:
            console.print(f"  [yellow]trial {number} not trained: {infeasible}[/]", highlight=False)

    def epoch(self, number, epoch, m):
        console.print(
            f"  trial {number} epoch {epoch}: val_macro_auc {m['val_macro_auc']:.4f}  "
            f"val_loss {m['val_loss']:.4f}  train_loss {m['train_loss']:.4f}  "
            f"({m['epoch_seconds']:.1f} s)",
            style="dim",
            highlight=False,
        )

    def first_speed(self, samples_per_s, device, n_train, max_epochs):
        per_epoch = n_train / max(samples_per_s, 1e-9)
        trials = f" x {self.n_trials} trials" if self.n_trials else ""
        total = per_epoch * max_epochs * (self.n_trials or 1) / 60
        console.print(
            f"[yellow]device {device}: {samples_per_s:.0f} training samples/s on the first trial "
            f"-> {per_epoch:.1f} s per epoch of {n_train} records; at most {max_epochs} epochs"
            f"{trials} = about {total:.1f} min before pruning and early stopping[/]",
            highlight=False,
        )

    def trial_finished(self, study, trial):
        if self.display is not None:
            self.display.finish(f"trial {trial.number}")
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        from ecg_sweep.sweep.cost import INFEASIBLE_ATTR

        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get(INFEASIBLE_ATTR, "")
        console.print(
            f"[bold]trial {trial.number} {trial.state.name}[/] value {value}; {best}"
            + (f"; {reason}" if reason else ""),
            highlight=False,
        )


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def optimize_cmd(
    model: Model,
    n_trials: Annotated[int, typer.Option("--n-trials", help="Trials this invocation runs.")] = 20,
    total_trials: Annotated[
        int | None,
        typer.Option("--total-trials", help="Stop once the study holds this many finished trials."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds for this invocation.")
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="Study to create or resume (default <model>-sweep)."),
    ] = None,
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random | cmaes | gp.")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median | hyperband | none.")] = "median",
    max_epochs: Annotated[int, typer.Option("--max-epochs", help="Epochs per trial at most.")] = 10,
    search_space: Annotated[
        Path | None,
        typer.Option("--search-space", help="YAML/TOML file narrowing ranges or fixing values."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a non-searched parameter: key=value (repeatable)."),
    ] = None,
    preset: Preset = None,
    n_jobs: Annotated[
        int, typer.Option("--n-jobs", help="Trials in parallel threads in this process.")
    ] = 1,
    trial_timeout: Annotated[
        float | None,
        typer.Option("--trial-timeout", help="Seconds a trial may train before it is stopped."),
    ] = None,
    teacher: Teacher = None,
    trust_pickle: TrustPickle = False,
    threshold_policy: ThresholdPolicy = None,
    calibrate: Calibrate = None,
    heartbeat_interval: Annotated[
        int, typer.Option("--heartbeat-interval", help="Seconds between trial heartbeats.")
    ] = 30,
    grace_period: Annotated[
        int,
        typer.Option(
            "--grace-period",
            help="Seconds without heartbeat before a trial counts as dead and is retried.",
        ),
    ] = 120,
    compress: Annotated[
        bool,
        typer.Option(
            "--compress/--no-compress", help="Compress the best trial's model afterwards."
        ),
    ] = True,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Register the best model (and best compressed variant) as ecg-<model>, "
            "alias challenger.",
        ),
    ] = True,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sampling_rate: SamplingRate = 100,
    task: Task = "superdiagnostic",
    on_bad_record: OnBadRecord = "error",
    device: Device = "auto",
    seed: Seed = 0,
    system_metrics: SystemMetrics = False,
    max_latency_ms: MaxLatencyMs = None,
    max_size_mb: MaxSizeMb = None,
    max_epoch_seconds: MaxEpochSeconds = None,
    max_cost_ratio: MaxCostRatio = 10.0,
    cost_probe: CostProbe = True,
) -> None:
    """Search a model's hyperparameters with Optuna; every trial is a nested MLflow run."""
    import optuna

    from ecg_sweep.config import CompressConfig, SweepConfig, TrainConfig
    from ecg_sweep.engine import resolve_device
    from ecg_sweep.errors import ConfigError
    from ecg_sweep.models import get_model_spec, list_models
    from ecg_sweep.models.space import load_space_file, select_model_section
    from ecg_sweep.sweep import check_stores, make_pruner, make_sampler, optimize, study_summary
    from ecg_sweep.sweep.study import DEFAULT_STORAGE
    from ecg_sweep.tracking.client import mask_url
    from ecg_sweep.tracking.contract import experiment_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    get_model_spec(model)
    for flag, value in (
        ("--n-trials", n_trials),
        ("--n-jobs", n_jobs),
        ("--max-epochs", max_epochs),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    overrides = ()
    if search_space:
        section = select_model_section(load_space_file(search_space), model, tuple(list_models()))
        overrides = tuple(section.items())
    decision = {
        k: v
        for k, v in (("threshold_policy", threshold_policy), ("calibrate", calibrate))
        if v is not None
    }
    TrainConfig(**decision)  # an unknown policy fails before any data is read
    fixed = tuple({**parse_set_options(model, sets or []), **decision}.items())
    cfg = SweepConfig(
        model=model,
        n_trials=n_trials,
        total_trials=total_trials,
        timeout=timeout,
        study_name=study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        experiment=experiment,
        sampler=sampler,
        pruner=pruner,
        max_epochs=max_epochs,
        n_jobs=n_jobs,
        trial_timeout=trial_timeout,
        seed=seed,
        search_space=overrides,
        search_space_file=str(search_space) if search_space else None,
        teacher=teacher,
        trust_pickle=trust_pickle,
        preset=preset,
        fixed=fixed,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        system_metrics=system_metrics,
        max_latency_ms=max_latency_ms,
        max_size_mb=max_size_mb,
        max_epoch_seconds=max_epoch_seconds,
        max_cost_ratio=max_cost_ratio,
        cost_probe=cost_probe,
    )
    make_sampler(sampler, seed)  # unknown names fail before any data is read
    make_pruner(pruner, max_epochs)
    dev = resolve_device(device)
    check_stores(cfg)  # an unreachable server fails before minutes of data preparation
    data = prepare_data(data_dir, cache_dir, sampling_rate, task, on_bad_record)
    console.print(
        f"study {cfg.resolved_study_name!r} on {mask_url(storage or DEFAULT_STORAGE)}, "
        f"MLflow experiment {experiment_name(model, experiment)!r}, device {dev}, sampler {sampler}, "
        f"pruner {pruner}",
        highlight=False,
    )
    with ProgressDisplay() as display:
        outcome = optimize(cfg, data, str(dev), ConsoleReporter(n_trials, display))
    summary = study_summary(outcome)
    _print_summary(summary, outcome.tracker.uri)
    if compress and outcome.best_run_id:
        compress_and_report(
            outcome.tracker, outcome.best_run_id, data, CompressConfig(device=str(dev))
        )
    if register and outcome.best_run_id:
        register_and_report(outcome.tracker, outcome.best_run_id, model, data, compress)


def _print_summary(s: dict, tracking_uri: str) -> None:
    from ecg_sweep.tracking.client import mask_url

    t = s["trials"]
    out.print(
        f"study {s['study_name']}: {t['COMPLETE']} complete, {t['PRUNED']} pruned, {t['FAIL']} failed"
    )
    if s["best_trial"] is None:
        out.print("no trial completed: nothing to evaluate")
        return
    table = Table(
        title=f"best trial {s['best_trial']}: val macro AUROC {s['best_value']:.4f}",
        title_justify="left",
    )
    table.add_column("parameter")
    table.add_column("value")
    for k, v in s["best_params"].items():
        table.add_row(k, _fmt(v))
    out.print(table)
    m = s["best_metrics"]
    if "test_macro_auc" in m:
        out.print(
            f"test fold: macro AUROC {m['test_macro_auc']:.4f} [{m['test_macro_auc_ci_low']:.4f}, "
            f"{m['test_macro_auc_ci_high']:.4f}], macro F1 {m['test_macro_f1']:.4f}, "
            f"exact-match {m['test_exact_match_accuracy']:.4f}"
        )
    out.print(f"MLflow study run {s['study_run_id']}, best trial run {s['best_run_id']}")
    out.print(f"best model: {s['best_model_uri']}")
    out.print(f"open the UI: ecg-sweep ui --tracking-uri {mask_url(tracking_uri)}")
