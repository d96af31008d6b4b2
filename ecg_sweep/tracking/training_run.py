"""One tracked training run, and the final evaluation every tracked model gets.

``ecg-sweep train`` calls :func:`train_and_log`; the sweep calls :func:`evaluate_and_log` for the
study's best trial. Both log through :class:`~ecg_sweep.tracking.client.Tracker` by run id.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_sweep.config import TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import (
    FitResult,
    ProgressHook,
    applied_settings,
    final_metrics,
    fit,
    seed_everything,
)
from ecg_sweep.models import ECGClassifier, ModelInfo, build_model, get_model_spec, model_info
from ecg_sweep.reporting import per_class_table, reliability_figure, roc_figure, subgroup_table
from ecg_sweep.tracking.client import Tracker
from ecg_sweep.tracking.contract import (
    KIND_TAG,
    KIND_TRAIN,
    MODEL_SUBGROUPS_FILE,
    MODEL_TAG,
    MODEL_URI_TAG,
    PER_CLASS_CSV,
    PER_CLASS_MD,
    RELIABILITY_PLOT,
    ROC_PLOT,
    SUBGROUPS_CSV,
    SUBGROUPS_MD,
    train_run_name,
)
from ecg_sweep.tracking.model_store import load_teacher, log_model, log_thresholds

__all__ = ["TrainOutcome", "evaluate_and_log", "run_params", "train_and_log"]

log = logging.getLogger(__name__)


def run_params(
    info: ModelInfo, cfg: TrainConfig, data: PreparedData, teacher: str | None = None
) -> dict[str, Any]:
    """The MLflow params of a training run: every model param and TrainConfig field under its
    own name (the search-space name), plus the data it saw. Distillation knobs only where they
    apply."""
    # device, amp and channels_last as fit() applies them (amp and channels_last act on CUDA
    # only): a CPU run logs amp=False, not the flag it was handed.
    train = {**dataclasses.asdict(cfg), **applied_settings(cfg)}
    if get_model_spec(info.model).distilled:
        train["distillation"] = "teacher" if teacher else "none (both heads learn the labels)"
        if teacher:
            train["teacher"] = teacher
    if not (get_model_spec(info.model).distilled and teacher):
        train.pop("distill_alpha")
        train.pop("distill_temperature")
    return {
        "model": info.model,
        **info.params,
        **train,
        "sampling_rate": data.sampling_rate,
        "task": data.config.task,
        "standardize": data.standardizer.mode,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_test": len(data.test),
    }


def evaluate_and_log(
    tracker: Tracker,
    run_id: str,
    model: ECGClassifier,
    data: PreparedData,
    cfg: TrainConfig,
    log_the_model: bool = True,
) -> tuple[dict[str, float], str | None]:
    """Test-fold metrics with CI, calibration and subgroups; ROC curves, reliability diagram,
    per-class and subgroup tables, thresholds and the model of a run.

    The validation-tuned decision (thresholds, policy, at-least-one rule, temperature) is stored
    in the model's info, so it travels with it; the subgroup table is also logged inside the
    model, so registered versions carry it. Returns (metrics, model URI or None).
    """
    metrics, thresholds, probs = final_metrics(model, data, cfg)
    tracker.log_metrics(run_id, metrics)
    model.info = model.info.with_thresholds(
        thresholds,
        threshold_policy=cfg.threshold_policy,
        at_least_one=cfg.at_least_one,
        temperature=metrics["calibration_temperature"],
    )
    test_y, test_p = data.test.y, probs["test"]
    table = per_class_table(test_y, test_p, thresholds, data.classes)
    tracker.log_text(run_id, table.to_csv(index=False), PER_CLASS_CSV)
    tracker.log_text(run_id, table.to_markdown(index=False), PER_CLASS_MD)
    tracker.log_figure(run_id, roc_figure(test_y, test_p, data.classes, "ROC, test fold"), ROC_PLOT)
    tracker.log_figure(
        run_id,
        reliability_figure(test_y, test_p, data.classes, "Reliability, test fold"),
        RELIABILITY_PLOT,
    )
    groups = None
    if data.test.sex is not None and data.test.age is not None:
        groups = subgroup_table(test_y, test_p, data.test.sex, data.test.age)
        tracker.log_text(run_id, groups.to_csv(index=False), SUBGROUPS_CSV)
        tracker.log_text(run_id, groups.to_markdown(index=False), SUBGROUPS_MD)
    log_thresholds(tracker, run_id, data.classes, thresholds)
    uri = None
    if log_the_model:
        uri = log_model(tracker, run_id, model, model.info, data.test.x[:2])
        if groups is not None:
            _log_into_model(tracker, uri, groups.to_csv(index=False), MODEL_SUBGROUPS_FILE)
    return metrics, uri


def _log_into_model(tracker: Tracker, model_uri: str, text: str, name: str) -> None:
    """A text file among the artifacts of the logged model ``models:/m-<id>`` (what a
    registered version points to)."""
    if not model_uri.startswith("models:/m-"):
        return
    import tempfile

    model_id = model_uri.split("/", 1)[1]
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-model-file-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        tracker.client.log_model_artifact(model_id, str(path))


@dataclass
class TrainOutcome:
    run_id: str
    metrics: dict[str, float]
    fit: FitResult
    model: ECGClassifier
    model_uri: str | None


def train_and_log(
    data: PreparedData,
    model_name: str,
    params: Mapping[str, Any],
    cfg: TrainConfig,
    tracker: Tracker,
    *,
    teacher: str | None = None,
    trust_pickle: bool = False,
    pretrained_weights: str | Path | None = None,
    run_name: str | None = None,
    checkpoint: str | Path | None = None,
    system_metrics: bool = False,
    progress: ProgressHook | None = None,
) -> TrainOutcome:
    """Train one model and log everything to a new MLflow run (``ecg_sweep.kind=train``).

    ``system_metrics``: MLflow system metrics (CPU, memory, GPU) sampled into the run;
    ``progress``: :func:`~ecg_sweep.engine.fit`'s per-batch hook.
    """
    teacher_model = load_teacher(teacher, model_name, trust_pickle)
    info = model_info(model_name, params, data)
    seed_everything(cfg.seed)
    model = build_model(info, pretrained_weights)
    run_id = tracker.start_run(
        run_name or train_run_name(model_name),
        tags={KIND_TAG: KIND_TRAIN, MODEL_TAG: model_name},
    )
    status = "FAILED"
    try:
        params = run_params(info, cfg, data, teacher)
        params["n_params"] = sum(p.numel() for p in model.parameters())
        tracker.log_params(run_id, params, new_run=True)
        tracker.log_dataset(run_id, data)

        def on_epoch_end(epoch: int, m: dict[str, float]) -> None:
            tracker.log_metrics(run_id, m, step=epoch)
            log.info(
                "epoch %d  train_loss %.4f  val_loss %.4f  val_macro_auc %.4f  (%.1f s)",
                epoch, m["train_loss"], m["val_loss"], m["val_macro_auc"], m["epoch_seconds"],
            )  # fmt: skip

        with tracker.system_metrics(run_id, system_metrics):
            result = fit(
                model,
                data,
                cfg,
                teacher=teacher_model,
                on_epoch_end=on_epoch_end,
                checkpoint=checkpoint,
                progress=progress,
            )
        tracker.log_metrics(
            run_id,
            {
                "best_val_macro_auc": result.best_val_macro_auc,
                "best_epoch": result.best_epoch,
                "train_samples_per_s": result.train_samples_per_s,
                "fit_seconds": result.seconds,
            },
        )
        metrics, uri = evaluate_and_log(tracker, run_id, model, data, cfg)
        if uri:
            tracker.set_tags(run_id, {MODEL_URI_TAG: uri})
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_run(run_id, status)
    return TrainOutcome(run_id, metrics, result, model, uri)
