"""The Optuna objective: sample -> build -> fit (pruning per epoch) -> log the trial run."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from torch import nn

from ecg_sweep.config import SweepConfig, TrainConfig, split_params
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import FitTimeout, fit, seed_everything
from ecg_sweep.models import ModelSpec, SpaceContext, build_model, make_train_config, model_info
from ecg_sweep.models.space import SearchSpace
from ecg_sweep.sweep.cost import (
    CONSTRAINTS_ATTR,
    COST_ATTR,
    INFEASIBLE_ATTR,
    TrialCost,
    check_cost,
    probe_cost,
)
from ecg_sweep.sweep.runs import (
    FAIL_REASON_ATTR,
    RUN_ATTR,
    end_trial_run,
    mark_stale_trial,
    trial_tags,
)
from ecg_sweep.tracking.client import Tracker
from ecg_sweep.tracking.contract import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    INFEASIBLE_TAG,
    STOP_REASON_TAG,
    trial_run_name,
)
from ecg_sweep.tracking.training_run import run_params

__all__ = ["Objective", "Reporter", "stale_trial_callback", "trial_train_config"]

log = logging.getLogger(__name__)


class Reporter:
    """Progress hooks for a UI; the default only logs. All methods may be called from threads."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        log.info("trial %d started: %s", number, params)

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        log.debug("trial %d epoch %d: %s", number, epoch, metrics)

    def first_speed(self, samples_per_s: float, device: str, n_train: int, max_epochs: int) -> None:
        log.info("first epoch: %.0f samples/s on %s", samples_per_s, device)

    def progress(self, number: int, what: str, done: int, total: int) -> None:
        """Per batch inside a trial's epochs (``what``: "epoch E train" / "epoch E validate")."""

    def cost(self, number: int, cost: TrialCost, infeasible: str | None) -> None:
        """The trial's cost, measured before training; ``infeasible``: why it will not train."""
        log.info("trial %d cost: %s; infeasible: %s", number, cost, infeasible or "no")


def trial_train_config(cfg: SweepConfig, sampled: dict[str, Any], trial_number: int) -> TrainConfig:
    """Family defaults < --set fixed values < sampled values; the seed differs per trial."""
    fixed_model, fixed_train = split_params(dict(cfg.fixed))
    _, train_params = split_params(sampled)
    return make_train_config(
        cfg.model,
        **{
            "max_epochs": cfg.max_epochs,
            **fixed_train,
            **train_params,
            "seed": cfg.seed + trial_number,
        },
    )


@dataclass
class Objective:
    cfg: SweepConfig
    spec: ModelSpec
    space: SearchSpace
    ctx: SpaceContext
    data: PreparedData
    tracker: Tracker
    study_run_id: str
    device: str
    teacher: nn.Module | None = None
    reporter: Reporter = field(default_factory=Reporter)
    # The family default's projected epoch seconds on this data (the guard's unit), per study.
    reference_epoch_seconds: float | None = None
    _speed_reported: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, trial: optuna.Trial) -> float:
        sampled = self.spec.suggest(trial, self.space, self.ctx)
        fixed_model, _ = split_params(dict(self.cfg.fixed))
        model_params, _ = split_params(
            {**self.spec.params(self.cfg.preset), **fixed_model, **sampled}
        )
        train_cfg = dataclasses.replace(
            trial_train_config(self.cfg, sampled, trial.number), device=self.device
        )
        info = model_info(self.cfg.model, model_params, self.data)
        run_id = self.tracker.start_run(
            trial_run_name(trial.number),
            tags=trial_tags(trial.study, trial.number, self.cfg.model),
            parent_run_id=self.study_run_id,
        )
        trial.set_user_attr(RUN_ATTR, run_id)
        self.reporter.trial_started(trial.number, sampled)
        try:
            with self.tracker.system_metrics(run_id, self.cfg.system_metrics):
                value = self._run(trial, run_id, info, train_cfg)
        except optuna.TrialPruned as e:
            self._end_run(trial, run_id, "PRUNED", str(e))
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            # Optuna first (the storage is the truth): the MLflow server may be what failed.
            trial.set_user_attr(FAIL_REASON_ATTR, reason[:1000])
            self._end_run(trial, run_id, "FAIL", reason)
            raise
        self._end_run(trial, run_id, "COMPLETE")
        return value

    def _end_run(self, trial: optuna.Trial, run_id: str, state: str, reason: str | None = None):
        """End the trial's MLflow run; a tracking failure here neither hides the trial's own
        error nor fails a trial that trained: the run is closed when the study resumes."""
        try:
            end_trial_run(self.tracker, run_id, state, reason)
        except Exception as e:
            log.warning(
                "trial %d: could not close its MLflow run %s (%s); the next optimize of this "
                "study closes it",
                trial.number,
                run_id,
                str(e).splitlines()[0][:200] if str(e) else type(e).__name__,
            )

    def _progress_hook(self, number: int):
        report = getattr(self.reporter, "progress", None)  # reporters are duck-typed
        if report is None:
            return None
        return lambda what, done, total: report(number, what, done, total)

    def _run(self, trial: optuna.Trial, run_id: str, info, train_cfg: TrainConfig) -> float:
        seed_everything(train_cfg.seed)
        model = build_model(info)
        params = run_params(info, train_cfg, self.data, self.cfg.teacher)
        params["n_params"] = sum(p.numel() for p in model.parameters())
        self.tracker.log_params(run_id, params, new_run=True)
        self.tracker.log_dataset(run_id, self.data)
        if self.cfg.cost_probe:
            self._check_cost(trial, run_id, model, train_cfg)

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            self.tracker.log_metrics(run_id, metrics, step=epoch)
            self.reporter.epoch(trial.number, epoch, metrics)
            with self._lock:
                first = not self._speed_reported
                self._speed_reported = True
            if first:
                self.reporter.first_speed(
                    metrics["train_samples_per_s"],
                    self.device,
                    len(self.data.train),
                    train_cfg.max_epochs,
                )
            trial.report(metrics["val_macro_auc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {epoch}: val_macro_auc {metrics['val_macro_auc']:.4f} "
                    f"below the {self.cfg.pruner} pruner's bar"
                )

        with tempfile.TemporaryDirectory(prefix="ecg-sweep-trial-") as d:
            ckpt = Path(d) / CHECKPOINT_FILE
            t0 = time.monotonic()
            try:
                result = fit(
                    model,
                    self.data,
                    train_cfg,
                    teacher=self.teacher,
                    on_epoch_end=on_epoch_end,
                    checkpoint=ckpt,
                    time_limit=self.cfg.trial_timeout,
                    progress=self._progress_hook(trial.number),
                )
            except FitTimeout as e:
                reason = f"trial timeout: {e}"
                if e.history:
                    # Prune with what it reached: the sampler learns the region was slow/poor.
                    raise optuna.TrialPruned(reason) from None
                raise TimeoutError(f"{reason} before the first epoch ended") from None
            self.tracker.log_metrics(
                run_id,
                {
                    "best_val_macro_auc": result.best_val_macro_auc,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "fit_seconds": time.monotonic() - t0,
                    "train_samples_per_s": result.train_samples_per_s,
                },
            )
            self.tracker.set_tags(run_id, {STOP_REASON_TAG: result.stop_reason})
            # Every completed trial keeps its best weights (cheap: a file copy); the study's
            # best is re-loaded from here to be evaluated on the test fold and logged as a model.
            self.tracker.log_artifact(run_id, ckpt, CHECKPOINT_DIR)
        return result.best_val_macro_auc

    def _check_cost(
        self, trial: optuna.Trial, run_id: str, model: nn.Module, train_cfg: TrainConfig
    ) -> None:
        """Measure the untrained model's cost; a trial that breaks a budget or the guard ends
        PRUNED here, before its first epoch, with the reason on its run.

        Constraint values go to Optuna as ``trial.set_constraint`` (Optuna 5's form, stored in
        the trial's system attrs), to feasible trials too; TPE counts a PRUNED trial whose
        constraints are > 0 as infeasible and ranks it by its violation (no objective value is
        made up). They are also kept in the user attrs (``constraints``, ``cost``).
        """
        cfg, ref = self.cfg, self.reference_epoch_seconds
        limits = [b for b in (cfg.max_epoch_seconds, cfg.guard_ratio * (ref or 0)) if b]
        cost = probe_cost(
            model,
            self.data,
            train_cfg,
            stop_above_epoch_seconds=min(limits) if limits else None,
        )
        self.tracker.log_metrics(run_id, cost.metrics())
        values, reason = check_cost(cost, cfg, ref)
        trial.set_user_attr(COST_ATTR, cost.as_dict())
        trial.set_user_attr(CONSTRAINTS_ATTR, values)
        for key, value in values.items():
            trial.set_constraint(key, value)
        report = getattr(self.reporter, "cost", None)  # reporters are duck-typed
        if report is not None:
            report(trial.number, cost, reason)
        if reason:
            trial.set_user_attr(INFEASIBLE_ATTR, reason)
            self.tracker.set_tags(run_id, {INFEASIBLE_TAG: reason[:5000]})
            raise optuna.TrialPruned(f"infeasible, not trained: {reason}")


def stale_trial_callback(tracker_factory: Callable[[], Tracker | None], max_retry: int):
    """Heartbeat-stale trial (dead worker): close its MLflow run, then retry its params."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tracker = tracker_factory()
        if tracker is not None:
            mark_stale_trial(tracker, trial)
        retry(study, trial)

    return callback
