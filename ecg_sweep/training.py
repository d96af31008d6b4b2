"""One tracked training run: build -> fit -> final metrics -> MLflow (params, curves, model).

``ecg-sweep train`` calls :func:`train_and_log`; the sweep reuses :func:`run_params`,
:func:`log_final` and :func:`load_teacher` for its trials.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ecg_sweep.config import TRAIN_FIELDS, TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import FitResult, eval_mode, final_metrics, fit, seed_everything
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import ECGClassifier, ModelInfo, build_model, get_model_spec
from ecg_sweep.tracking import KIND_TAG, Tracker

__all__ = [
    "split_params",
    "make_train_config",
    "model_info",
    "run_params",
    "load_teacher",
    "log_final",
    "train_and_log",
    "TrainOutcome",
    "parse_set_options",
]

log = logging.getLogger(__name__)


def _coerce(key: str, text: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected a {type(like).__name__}") from None
    return text


def parse_set_options(model: str, items: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "depth=4"]`` -> typed dict, typed like each key's default; unknown keys fail."""
    spec = get_model_spec(model)
    known = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **spec.defaults}
    known.update(spec.train_defaults)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        if key not in known:
            raise ConfigError(
                f"--set {key}: not a parameter of model {model!r} or of training; valid: "
                f"{', '.join(sorted(known))}"
            )
        out[key] = _coerce(key, value.strip(), known[key])
    return out


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat parameter dict into (model params, TrainConfig fields): one name each."""
    model = {k: v for k, v in params.items() if k not in TRAIN_FIELDS}
    train = {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    return model, train


def make_train_config(model: str, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """The family's optimizer/lr/weight-decay defaults, then ``base``'s explicit fields, then overrides."""
    spec = get_model_spec(model)
    values = dataclasses.asdict(base or TrainConfig())
    defaults = dataclasses.asdict(TrainConfig())
    for k, v in spec.train_defaults.items():
        if base is None or values[k] == defaults[k]:
            values[k] = v
    values.update(overrides)
    return TrainConfig(**values)


def model_info(
    model: str, params: Mapping[str, Any], data: PreparedData, **extra: Any
) -> ModelInfo:
    spec = get_model_spec(model)
    full = spec.params(**dict(params))
    info = ModelInfo(
        model=model,
        params=spec.active_params(full),
        classes=data.classes,
        sampling_rate=data.sampling_rate,
        n_leads=data.n_leads,
        n_samples=data.n_samples,
        standardizer=data.standardizer.as_dict(),
        extra=dict(extra),
    )
    spec.validate(full, info.context)
    return info


def run_params(
    info: ModelInfo, cfg: TrainConfig, data: PreparedData, teacher: str | None = None
) -> dict[str, Any]:
    """The MLflow params of a run: every model param and TrainConfig field under its own name."""
    train = dataclasses.asdict(cfg)
    spec = get_model_spec(info.model)
    if spec.distilled:
        train["distillation"] = "teacher" if teacher else "none (both heads learn the labels)"
        if teacher:
            train["teacher"] = teacher
        else:
            train.pop("distill_alpha")
            train.pop("distill_temperature")
    else:
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


def load_teacher(source: str | None, model: str) -> nn.Module | None:
    """A teacher from a checkpoint path or an MLflow URI; only DeiT distils."""
    if not source:
        return None
    if not get_model_spec(model).distilled:
        raise ConfigError(f"--teacher applies to distilled models (deit), not {model!r}")
    from ecg_sweep.model_io import load_model

    teacher, _ = load_model(source)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return eval_mode(teacher)


def log_final(
    tracker: Tracker,
    run_id: str,
    model: ECGClassifier,
    data: PreparedData,
    cfg: TrainConfig,
    log_model: bool = True,
) -> tuple[dict[str, float], str | None]:
    """Test-fold metrics with CI, ROC curves, per-class table and the model for one run.

    The validation-tuned thresholds are stored in the model's info, so they travel with it.
    """
    from ecg_sweep.model_io import log_torch_model, with_thresholds
    from ecg_sweep.reporting import per_class_table, roc_figure

    metrics, thresholds, probs = final_metrics(model, data, cfg)
    tracker.log_metrics(run_id, metrics)
    with_thresholds(model, thresholds)
    table = per_class_table(data.test.y, probs["test"], thresholds, data.classes)
    tracker.log_text(run_id, table.to_csv(index=False), "metrics/test_per_class.csv")
    tracker.log_text(
        run_id,
        table.to_markdown(index=False),
        "metrics/test_per_class.md",
    )
    tracker.log_figure(
        run_id,
        roc_figure(data.test.y, probs["test"], data.classes, "ROC, test fold"),
        "plots/roc_test.png",
    )
    tracker.log_dict(
        run_id,
        {"classes": list(data.classes), "thresholds": [float(t) for t in thresholds]},
        "thresholds.json",
    )
    uri = log_torch_model(tracker.uri, run_id, model, data.test.x[:2]) if log_model else None
    return metrics, uri


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
    pretrained_weights: str | Path | None = None,
    run_name: str | None = None,
    checkpoint: str | Path | None = None,
) -> TrainOutcome:
    """Train one model and log everything to a new MLflow run (``ecg_sweep.kind=train``)."""
    teacher_model = load_teacher(teacher, model_name)
    info = model_info(model_name, params, data)
    seed_everything(cfg.seed)
    model = build_model(info, pretrained_weights)
    run_id = tracker.start_run(
        run_name or f"train-{model_name}",
        tags={KIND_TAG: "train", "ecg_sweep.model": model_name},
    )
    status = "FAILED"
    try:
        params = run_params(info, cfg, data, teacher)
        params["n_params"] = sum(p.numel() for p in model.parameters())
        tracker.log_params(run_id, params, new_run=True)

        def on_epoch_end(epoch: int, m: dict[str, float]) -> None:
            tracker.log_metrics(run_id, m, step=epoch)
            log.info(
                "epoch %d  train_loss %.4f  val_loss %.4f  val_macro_auc %.4f  (%.1f s)",
                epoch, m["train_loss"], m["val_loss"], m["val_macro_auc"], m["epoch_seconds"],
            )  # fmt: skip

        result = fit(
            model,
            data,
            cfg,
            teacher=teacher_model,
            on_epoch_end=on_epoch_end,
            checkpoint=checkpoint,
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
        metrics, uri = log_final(tracker, run_id, model, data, cfg)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_run(run_id, status)
    return TrainOutcome(run_id, metrics, result, model, uri)


def baseline_metrics(data: PreparedData) -> dict[str, float]:
    """The trivial baselines every model must beat, on the test fold.

    Exact-match and F1: predict the most frequent training label set for everyone ("NORM for
    everyone" on PTB-XL: exact-match 0.42, macro F1 0.12). AUROC: a constant scores 0.5.
    """
    from collections import Counter

    from ecg_sweep.metrics import exact_match_accuracy, macro_f1

    rows = Counter(map(tuple, data.train.y.astype(int)))
    majority = np.asarray(rows.most_common(1)[0][0], dtype=np.float64)
    p = np.broadcast_to(majority, data.test.y.shape)
    return {
        "test_exact_match_accuracy": exact_match_accuracy(data.test.y, p, 0.5),
        "test_macro_f1": macro_f1(data.test.y, p, 0.5),
        "test_macro_auc": 0.5,
    }
