"""``optimize()``: one invocation of a (possibly shared, possibly resumed) study."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from ecg_sweep.config import TRAIN_FIELDS, SweepConfig, split_params
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import resolve_device
from ecg_sweep.errors import ConfigError, StorageError, Terminated
from ecg_sweep.models import SpaceContext, build_model, get_model_spec, load_checkpoint, model_info
from ecg_sweep.models.space import apply_overrides, space_to_dict
from ecg_sweep.sweep.cost import REFERENCE_ATTR, ProbeSettings, epoch_seconds
from ecg_sweep.sweep.objective import Objective, Reporter, stale_trial_callback, trial_train_config
from ecg_sweep.sweep.runs import (
    RUN_ATTR,
    attach_study_run,
    close_finished_trial_runs,
    log_study_summary,
    previous_best_runs,
)
from ecg_sweep.sweep.study import (
    DEFAULT_STORAGE,
    make_pruner,
    make_sampler,
    make_storage,
    study_lock,
    worker_token,
)
from ecg_sweep.tracking.client import Tracker, bounded_http_retries, mask_url
from ecg_sweep.tracking.contract import (
    BEST_TAG,
    MODEL_URI_TAG,
    STOP_REASON_TAG,
    TRIAL_STATE_TAG,
    experiment_name,
)
from ecg_sweep.tracking.model_store import download_checkpoint, load_teacher
from ecg_sweep.tracking.training_run import evaluate_and_log

__all__ = ["SweepOutcome", "optimize", "build_space", "check_stores", "study_summary"]

log = logging.getLogger(__name__)

_SPACE_ATTR = "search_space"


@dataclass
class SweepOutcome:
    study: optuna.Study
    study_run_id: str
    tracker: Tracker
    best_trial: optuna.trial.FrozenTrial | None
    best_run_id: str | None
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_model_uri: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def check_stores(cfg: SweepConfig) -> None:
    """Open the MLflow tracking store and the Optuna storage once, before any data is prepared:
    an unreachable server or a bad URL fails in one line, not after minutes of decoding."""
    Tracker(cfg.tracking_uri, experiment_name(cfg.model, cfg.experiment))
    make_storage(cfg.storage, cfg.heartbeat_interval, cfg.grace_period).engine.dispose()


def build_space(cfg: SweepConfig, ctx: SpaceContext) -> dict:
    """The model's default space for this input, with the --search-space overrides applied."""
    spec = get_model_spec(cfg.model)
    space = apply_overrides(spec.search_space(ctx), dict(cfg.search_space), cfg.model)
    spec.validate_space(space, ctx)
    clash = sorted(k for k, _ in cfg.fixed if k in space)
    if clash:
        raise ConfigError(
            f"--set {clash[0]}: this parameter is searched; fix it in --search-space instead"
        )
    return space


def _sampler_seed(seed: int, first_worker: bool) -> int:
    """The study's creator uses ``seed`` (reproducible); other workers derive their own so that
    concurrent workers do not sample the same startup points."""
    if first_worker:
        return seed
    digest = hashlib.sha256(f"{seed}:{worker_token()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def optimize(
    cfg: SweepConfig,
    data: PreparedData,
    device: str = "auto",
    reporter: Reporter | None = None,
) -> SweepOutcome:
    """Run ``cfg.n_trials`` trials of the study ``cfg.resolved_study_name`` and log them to MLflow.

    Creates or resumes the study; every trial is a nested MLflow run under the study run; at the
    end the best trial is evaluated once on the test fold and its model logged. MLflow's HTTP
    retries are bounded meanwhile (:data:`~ecg_sweep.tracking.client.STUDY_HTTP_RETRIES`,
    unless the environment sets them), and a resume closes the runs that trials finished
    while the server was away left RUNNING.
    """
    with bounded_http_retries():
        return _optimize(cfg, data, device, reporter)


def _optimize(
    cfg: SweepConfig, data: PreparedData, device: str, reporter: Reporter | None
) -> SweepOutcome:
    reporter = reporter or Reporter()
    spec = get_model_spec(cfg.model)
    # Names first: a typo must fail before any storage, tracking or training is touched.
    make_sampler(cfg.sampler, cfg.seed)
    pruner = make_pruner(cfg.pruner, cfg.max_epochs)
    ctx = SpaceContext(data.n_leads, data.n_samples, has_teacher=bool(cfg.teacher))
    space = build_space(cfg, ctx)
    unknown = [k for k, _ in cfg.fixed if k not in TRAIN_FIELDS and k not in spec.defaults]
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: not a parameter of {cfg.model!r} or of training")
    dev = str(resolve_device(device))
    tracker = Tracker(cfg.tracking_uri, experiment_name(cfg.model, cfg.experiment))  # fails fast
    teacher = load_teacher(cfg.teacher, cfg.model, cfg.trust_pickle)
    storage_url = cfg.storage or DEFAULT_STORAGE
    storage = make_storage(
        storage_url,
        cfg.heartbeat_interval,
        cfg.grace_period,
        stale_trial_callback(lambda: tracker, cfg.max_retry),
    )
    space_dict = space_to_dict(space)
    study_params = {
        "model": cfg.model,
        "sampler": cfg.sampler,
        "pruner": cfg.pruner,
        "n_trials": cfg.n_trials,
        "max_epochs": cfg.max_epochs,
        "seed": cfg.seed,
        "storage": mask_url(storage_url),
        "search_space_file": cfg.search_space_file,
        "teacher": cfg.teacher,
        "preset": cfg.preset,
        "n_jobs": cfg.n_jobs,
        "trial_timeout": cfg.trial_timeout,
        "system_metrics": cfg.system_metrics,
        "max_latency_ms": cfg.max_latency_ms,
        "max_size_mb": cfg.max_size_mb,
        "max_epoch_seconds": cfg.max_epoch_seconds,
        "max_cost_ratio": cfg.guard_ratio,
        "cost_probe": cfg.cost_probe,
        "sampling_rate": data.sampling_rate,
        "task": data.config.task,
        **{f"fixed.{k}": v for k, v in cfg.fixed},
    }
    name = cfg.resolved_study_name
    with study_lock(storage_url, name):
        try:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                direction="maximize",
                pruner=pruner,
                load_if_exists=True,
            )
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(
                f"--storage {mask_url(storage_url)}: cannot create or load study {name!r}: "
                f"{mask_url(str(e).splitlines()[0] if str(e) else type(e).__name__)[:300]}"
            ) from None
        if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
            raise StorageError(f"study {name!r} exists but does not maximize; use another name")
        if study.user_attrs.get("model", cfg.model) != cfg.model:
            raise ConfigError(
                f"--study-name {name}: this study searches model {study.user_attrs['model']!r}, "
                f"not {cfg.model!r}; pick another study name"
            )
        study_run_id, created = attach_study_run(tracker, study, study_params, space_dict)
        if not created and (n := close_finished_trial_runs(tracker, study, study_run_id)):
            log.info("closed %d trial run(s) left RUNNING by finished trials", n)
        tracker.log_dataset(study_run_id, data)
        first_worker = created and not study.trials
        if first_worker or _SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(_SPACE_ATTR, space_dict)
            study.set_user_attr("model", cfg.model)
        elif study.user_attrs[_SPACE_ATTR] != space_dict:
            log.warning(
                "study %r was created with another search space; the new one applies to new trials",
                name,
            )
        reference = _reference_epoch_seconds(cfg, study, data, dev) if cfg.guard_ratio else None
    study.sampler = make_sampler(cfg.sampler, _sampler_seed(cfg.seed, first_worker))

    if cfg.n_jobs > 1:
        # Trials run in threads: share the cores instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.n_jobs))
    objective = Objective(
        cfg=cfg,
        spec=spec,
        space=space,
        ctx=ctx,
        data=data,
        tracker=tracker,
        study_run_id=study_run_id,
        device=dev,
        teacher=teacher,
        reporter=reporter,
        reference_epoch_seconds=reference,
    )
    callbacks = []
    if cfg.total_trials:
        callbacks.append(
            optuna.study.MaxTrialsCallback(
                cfg.total_trials, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            )
        )
    if hasattr(reporter, "trial_finished"):
        callbacks.append(reporter.trial_finished)
    status = "FAILED"
    quiet = _QuietInterrupt()
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet)
    try:
        study.optimize(
            objective,
            n_trials=cfg.n_trials,
            timeout=cfg.timeout,
            n_jobs=cfg.n_jobs,
            catch=(Exception,),
            callbacks=callbacks,
            gc_after_trial=True,
        )
        status = "FINISHED"
    except KeyboardInterrupt as e:
        status = "KILLED"
        why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted by the user"
        _close_interrupted(tracker, study, why)
        raise
    finally:
        optuna_log.removeFilter(quiet)
        if status != "FINISHED":
            tracker.end_run(study_run_id, status)
    outcome = finalize(cfg, study, tracker, study_run_id, data, dev)
    tracker.end_run(study_run_id, "FINISHED")
    return outcome


def _reference_epoch_seconds(
    cfg: SweepConfig, study: optuna.Study, data: PreparedData, device: str
) -> float | None:
    """The family default configuration's projected epoch seconds on this data and device:
    the default guard's unit. Measured once per study (call under ``study_lock``) and kept in
    the study's user attrs, so resumed invocations and other workers reuse it; measured again
    only where the device or the data's size differ."""
    key = {"device": device, "n_train": len(data.train), "n_val": len(data.val)}
    stored = study.user_attrs.get(REFERENCE_ATTR) or {}
    if stored and {k: stored.get(k) for k in key} == key:
        return float(stored["epoch_seconds"])
    spec = get_model_spec(cfg.model)
    fixed_model, _ = split_params(dict(cfg.fixed))
    try:
        info = model_info(cfg.model, {**spec.params(cfg.preset), **fixed_model}, data)
        train_cfg = dataclasses.replace(trial_train_config(cfg, {}, 0), device=device)
        # Measured once per study: it can afford more steps than a trial's probe.
        settings = ProbeSettings(train_steps=5, max_share=0.05)
        seconds = epoch_seconds(build_model(info), data, train_cfg, settings)
    except Exception as e:  # the default cannot be built on this data: no unit, no guard
        log.warning("no cost guard: the %s default configuration failed: %s", cfg.model, e)
        return None
    study.set_user_attr(REFERENCE_ATTR, {**key, "epoch_seconds": seconds})
    log.info("cost guard: the %s default projects %.1f s per epoch", cfg.model, seconds)
    return seconds


class _QuietInterrupt(logging.Filter):
    """Ctrl-C / SIGTERM: the CLI says so in one line; drop Optuna's "Trial N failed ...
    KeyboardInterrupt" traceback and the "failed with value None" line that follows it."""

    def __init__(self) -> None:
        super().__init__()
        self.dropping = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt):
            self.dropping = True
            return False
        if self.dropping and "failed with value" in record.getMessage():
            self.dropping = False
            return False
        return True


def _close_interrupted(tracker: Tracker, study: optuna.Study, why: str) -> None:
    """Ctrl-C or SIGTERM: Optuna fails the running trial; its MLflow run ends KILLED (the
    trial-state tag says FAIL, as in Optuna), with the reason."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.RUNNING)):
        run_id = t.user_attrs.get(RUN_ATTR)
        if not run_id:
            continue
        try:
            if tracker.get_run(run_id).info.status == "RUNNING":
                tracker.set_tags(run_id, {TRIAL_STATE_TAG: "FAIL", STOP_REASON_TAG: why})
                tracker.end_run(run_id, "KILLED")
        except Exception:
            pass


def finalize(
    cfg: SweepConfig,
    study: optuna.Study,
    tracker: Tracker,
    study_run_id: str,
    data: PreparedData,
    device: str,
) -> SweepOutcome:
    """Evaluate the best trial on the test fold once, log its model, summarize the study run."""
    states = [t.state for t in study.trials]
    counts = {
        s.name: states.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    outcome = SweepOutcome(study, study_run_id, tracker, None, None, counts=counts)
    if not counts["COMPLETE"]:
        log_study_summary(tracker, study_run_id, study, None, {})
        return outcome
    best = study.best_trial
    run_id = best.user_attrs[RUN_ATTR]
    with study_lock(cfg.storage, study.study_name):
        run = tracker.get_run(run_id)
        if run.data.tags.get(MODEL_URI_TAG):
            # Another worker (or an earlier invocation) already evaluated this best trial.
            metrics = {
                k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "final_val_"))
            }
            uri = run.data.tags[MODEL_URI_TAG]
        else:
            for old in previous_best_runs(tracker, study_run_id):
                tracker.set_tags(old, {BEST_TAG: "false"})
            with tempfile.TemporaryDirectory() as d:
                model = load_checkpoint(download_checkpoint(tracker, run_id, d))
            eval_cfg = dataclasses.replace(
                trial_train_config(cfg, best.params, best.number), device=device
            )
            metrics, uri = evaluate_and_log(tracker, run_id, model, data, eval_cfg)
            tracker.set_tags(run_id, {BEST_TAG: "true", MODEL_URI_TAG: uri})
        log_study_summary(tracker, study_run_id, study, run_id, metrics)
    outcome.best_trial = best
    outcome.best_run_id = run_id
    outcome.best_metrics = metrics
    outcome.best_model_uri = uri
    return outcome


def study_summary(outcome: SweepOutcome) -> dict[str, Any]:
    b = outcome.best_trial
    return {
        "study_name": outcome.study.study_name,
        "study_run_id": outcome.study_run_id,
        "trials": outcome.counts,
        "best_trial": None if b is None else b.number,
        "best_value": None if b is None else b.value,
        "best_params": None if b is None else b.params,
        "best_run_id": outcome.best_run_id,
        "best_model_uri": outcome.best_model_uri,
        "best_metrics": outcome.best_metrics,
    }
