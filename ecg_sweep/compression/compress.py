"""``compress_run``: the best trial's model through every method, one nested MLflow run each.

Flow: load the trial's best checkpoint -> build every variant (fine-tuning / QAT through
``fit()``, calibration on training batches) and score it on validation and test -> time all
variants together, interleaved, with a fixed thread count -> log each run (params, metrics,
thresholds, the deployable model) -> a summary table and a trade-off plot on the trial's run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecg_sweep.compression.measure import file_size, measure_latency, torch_threads
from ecg_sweep.compression.methods import BuildContext, Method, Variant, resolve_methods
from ecg_sweep.config import TRAIN_FIELDS, CompressConfig, TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import (
    ProgressHook,
    predict_proba,
    rescale,
    resolve_device,
    seed_everything,
)
from ecg_sweep.errors import ConfigError, TrackingError
from ecg_sweep.metrics import classification_report, macro_auc, macro_f1, thresholds_for_policy
from ecg_sweep.models import ECGClassifier, ModelInfo, load_checkpoint, make_train_config
from ecg_sweep.tracking.client import Tracker, try_store_lock
from ecg_sweep.tracking.contract import (
    CHECKPOINT_ARTIFACT,
    COMPRESSION_METHODS_TAG,
    COMPRESSION_SUMMARY_CSV,
    COMPRESSION_SUMMARY_MD,
    COMPRESSION_TRADEOFF_PLOT,
    COST_LATENCY_MS_INT8,
    COST_LATENCY_RATIO_INT8,
    COST_SIZE_BYTES_INT8,
    COST_SIZE_RATIO_INT8,
    DATASET_CONTEXT_COMPRESSION,
    ERROR_TAG,
    KIND_COMPRESSION,
    KIND_TAG,
    MEASURED_LATENCY_MS_INT8,
    MEASURED_SIZE_BYTES_INT8,
    METHOD_TAG,
    MODEL_TAG,
    MODEL_URI_TAG,
    NOTE_TAG,
    PARENT_TAG,
    RECOMMENDED_TAG,
    SKIPPED_TAG,
    compression_run_name,
)
from ecg_sweep.tracking.model_store import (
    download_checkpoint,
    has_checkpoint,
    load_logged_weights,
    log_model,
    log_thresholds,
    logged_model_uri,
)

__all__ = ["MAX_AUC_DROP", "CompressionReport", "CompressionRow", "compress_run", "recommend"]

log = logging.getLogger(__name__)

MAX_AUC_DROP = 0.01  # a recommended int8 variant loses at most this much validation AUROC


@dataclass
class CompressionRow:
    """One method's outcome: ``status`` is ok, skipped (``reason`` says why) or failed."""

    method: str
    status: str
    run_id: str | None = None
    reason: str | None = None
    int8: bool = False
    loads_without_code: bool = True
    format: str | None = None
    runtime: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    model_uri: str | None = None


@dataclass
class CompressionReport:
    """All rows of one ``compress_run``, with the table that is printed and logged."""

    best_run_id: str
    model: str
    config: CompressConfig
    rows: list[CompressionRow]
    recommended: str | None = None
    # method -> the in-memory variant ((B, 12, T) tensor -> logits), for callers and tests
    modules: dict[str, Any] = field(default_factory=dict, repr=False)

    def row(self, method: str) -> CompressionRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)

    def table(self) -> pd.DataFrame:
        """One line per method: size, latency, speedup, AUROC/F1 and their deltas vs fp32."""
        lines = []
        for r in self.rows:
            m = r.metrics
            lines.append(
                {
                    "method": r.method,
                    "status": r.status,
                    "runtime": r.runtime or "",
                    "size_MB": m.get("size_bytes", math.nan) / 1e6,
                    "size_ratio": m.get("size_ratio", math.nan),
                    "params_M": m.get("n_params", math.nan) / 1e6,
                    "nonzero": m.get("nonzero_ratio", math.nan),
                    "p50_bs1_ms": m.get("latency_ms_p50_bs1", math.nan),
                    "p95_bs1_ms": m.get("latency_ms_p95_bs1", math.nan),
                    "p50_bs32_ms": m.get("latency_ms_p50_bs32", math.nan),
                    "speedup_bs1": m.get("speedup_bs1", math.nan),
                    "test_auc": m.get("test_macro_auc", math.nan),
                    "test_auc_delta": m.get("test_macro_auc_delta", math.nan),
                    "test_f1": m.get("test_macro_f1", math.nan),
                    "test_f1_delta": m.get("test_macro_f1_delta", math.nan),
                    "val_auc": m.get("val_macro_auc", math.nan),
                    "note": r.reason or "",
                }
            )
        return pd.DataFrame(lines)

    def to_markdown(self) -> str:
        return self.table().to_markdown(index=False, floatfmt=".4g")


# --- resolving the run and its model ----------------------------------------------------------


def _get_run(tracker: Tracker, run_id: str):
    try:
        return tracker.get_run(run_id)
    except Exception:
        raise TrackingError(
            f"run {run_id!r} not found in the tracking store {tracker.uri}"
        ) from None


def _load_trial_model(tracker: Tracker, run_id: str, dest: str) -> ECGClassifier:
    """A completed trial's weights-only checkpoint, else the torch model the run logged
    (``ecg-sweep train`` runs, evaluated trials)."""
    if has_checkpoint(tracker, run_id):
        return load_checkpoint(download_checkpoint(tracker, run_id, dest)).eval()
    uri = logged_model_uri(tracker, run_id)
    if uri is None:
        raise ConfigError(
            f"run {run_id} logged no model (no {CHECKPOINT_ARTIFACT}, no MLflow model): "
            "pass a completed trial or a train run"
        )
    return load_logged_weights(uri, dest)


def _check_data(info: ModelInfo, data: PreparedData) -> None:
    if tuple(info.classes) != tuple(data.classes):
        raise ConfigError(
            f"the run's model predicts {', '.join(info.classes)} but the data has "
            f"{', '.join(data.classes)}: pass the --task the study used"
        )
    if (info.n_leads, info.n_samples) != (data.n_leads, data.n_samples):
        raise ConfigError(
            f"the run's model takes ({info.n_leads}, {info.n_samples}) records at "
            f"{info.sampling_rate} Hz but the data gives ({data.n_leads}, {data.n_samples}): "
            "pass the --sampling-rate the study used"
        )


def _with_run_decision(run, info: ModelInfo) -> ModelInfo:
    """A trial checkpoint is saved before the final evaluation decides: take the decision the
    run logged (its ``threshold_policy`` / ``at_least_one`` params and its
    ``calibration_temperature``), where the info has none."""
    if info.threshold_policy is not None:
        return info
    p, m = run.data.params, run.data.metrics
    if "threshold_policy" not in p:
        return info  # logged before policies existed: _decision falls back to the defaults
    return dataclasses.replace(
        info,
        threshold_policy=p["threshold_policy"],
        at_least_one=p.get("at_least_one", "True") == "True",
        temperature=float(m.get("calibration_temperature", 1.0)),
    )


def _finetune_config(run, info: ModelInfo, cfg: CompressConfig) -> TrainConfig:
    """The trial's optimizer settings (its params), ``finetune_epochs`` long, lr scaled down."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    logged = {}
    for key in ("lr", "weight_decay", "batch_size", "optimizer", "grad_clip"):
        if key in run.data.params and key in TRAIN_FIELDS:
            like = defaults[key]
            text = run.data.params[key]
            logged[key] = type(like)(float(text)) if isinstance(like, (int, float)) else text
    base = make_train_config(info.model, **logged)
    return dataclasses.replace(
        base,
        max_epochs=cfg.finetune_epochs,
        lr=base.lr * cfg.finetune_lr_scale,
        warmup_epochs=0.0,
        patience=cfg.finetune_epochs,
        seed=cfg.seed,
        device=str(resolve_device(cfg.device)),
        n_bootstrap=0,
    )


# --- measuring --------------------------------------------------------------------------------


def _info(variant: Variant) -> ModelInfo | None:
    info = getattr(variant.module, "info", None)
    if info is None and variant.float_model is not None:
        info = variant.float_model.info
    return info


def _decision(variant: Variant) -> tuple[str, bool, float]:
    """(threshold policy, at-least-one rule, temperature) of the source model: what its info
    says, else (a trial checkpoint, saved before the final evaluation) the training defaults."""
    info = _info(variant)
    if info is None or info.threshold_policy is None:
        default = TrainConfig()
        return (
            default.threshold_policy,
            default.at_least_one,
            1.0 if info is None else info.temperature,
        )
    return info.threshold_policy, info.at_least_one, info.temperature


def _accuracy(
    variant: Variant, data: PreparedData, cfg: CompressConfig, progress: ProgressHook | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """Validation-tuned thresholds for this variant, then validation and test metrics, decided
    as :func:`_decision` says."""
    policy, rule, temperature = _decision(variant)

    def phase(what: str):
        return None if progress is None else lambda d, t: progress(what, d, t)

    with torch_threads(cfg.threads):
        val_p = predict_proba(
            variant.module, data.val.x, "cpu", amp=False, progress=phase("score validation")
        )
        test_p = predict_proba(
            variant.module, data.test.x, "cpu", amp=False, progress=phase("score test")
        )
    val_p, test_p = rescale(val_p, temperature), rescale(test_p, temperature)
    thresholds = thresholds_for_policy(policy, data.val.y, val_p, rule)
    metrics = {
        "val_macro_auc": macro_auc(data.val.y, val_p),
        "val_macro_f1": macro_f1(data.val.y, val_p, thresholds, rule),
        **classification_report(
            data.test.y, test_p, thresholds, data.classes, "test", cfg.n_bootstrap, cfg.seed, rule
        ),
    }
    return metrics, thresholds


def _batch(x: np.ndarray, n: int) -> np.ndarray:
    # (n, 12, T) float32 from the test split, repeating records when it has fewer than n
    idx = np.arange(n) % len(x)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def _relative(metrics: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    out = {
        "size_ratio": metrics["size_bytes"] / base["size_bytes"],
        "speedup_bs1": base["latency_ms_p50_bs1"] / metrics["latency_ms_p50_bs1"],
        "speedup_bs32": base["latency_ms_p50_bs32"] / metrics["latency_ms_p50_bs32"],
    }
    for key in ("test_macro_auc", "test_macro_f1", "val_macro_auc", "val_macro_f1"):
        out[f"{key}_delta"] = metrics[key] - base[key]
    return out


# --- logging ----------------------------------------------------------------------------------


def _tradeoff_figure(report: CompressionReport):
    """Size vs latency (colour = test AUROC) and latency vs test AUROC, one point per method."""
    import matplotlib.pyplot as plt

    import ecg_sweep.reporting  # noqa: F401  (selects the headless backend)

    t = report.table()
    t = t[t["status"] == "ok"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sc = ax1.scatter(t["size_MB"], t["p50_bs1_ms"], c=t["test_auc"], cmap="viridis", s=60)
    fig.colorbar(sc, ax=ax1, label="test macro AUROC")
    ax1.set_xscale("log")
    ax1.set_xlabel("artifact size (MB, log)")
    ax1.set_ylabel(f"p50 latency, batch 1 (ms, {report.config.threads} threads)")
    ax2.scatter(t["p50_bs1_ms"], t["test_auc"], s=20 + 200 * t["size_ratio"].fillna(1), alpha=0.7)
    ax2.set_xlabel("p50 latency, batch 1 (ms)")
    ax2.set_ylabel("test macro AUROC (marker area ~ size)")
    for _, r in t.iterrows():
        ax1.annotate(r["method"], (r["size_MB"], r["p50_bs1_ms"]), fontsize=7)
        ax2.annotate(r["method"], (r["p50_bs1_ms"], r["test_auc"]), fontsize=7)
    fig.suptitle(
        f"{report.model}: compression trade-offs (best trial run {report.best_run_id[:8]})"
    )
    fig.tight_layout()
    return fig


def recommend(rows: list[CompressionRow]) -> str | None:
    """The fastest int8 variant that keeps validation AUROC within MAX_AUC_DROP of fp32 and
    loads without running stored code (it is what gets registered and served by ``predict``).

    Chosen on validation, never on test, so the reported test numbers stay unbiased.
    """
    ok = [
        r
        for r in rows
        if r.status == "ok"
        and r.int8
        and r.loads_without_code
        and r.metrics.get("val_macro_auc_delta", -math.inf) >= -MAX_AUC_DROP
    ]
    if not ok:
        return None
    return min(ok, key=lambda r: r.metrics["latency_ms_p50_bs1"]).method


# --- the entry point --------------------------------------------------------------------------


@dataclass
class _Built:
    method: Method
    row: CompressionRow
    variant: Variant
    accuracy: dict[str, float]
    thresholds: np.ndarray
    seconds: float


def compress_run(
    tracker: Tracker,
    best_run_id: str,
    data: PreparedData,
    config: CompressConfig | None = None,
    progress: ProgressHook | None = None,
) -> CompressionReport:
    """Compress the model of ``best_run_id`` with ``config.methods`` (default: all), measure each.

    Every method becomes a nested compression run under ``best_run_id`` (names and tags of
    :mod:`ecg_sweep.tracking.contract`: ``KIND_COMPRESSION``, ``METHOD_TAG``), with the metrics
    of DESIGN.md §4, the method's params, validation-tuned thresholds and the deployable model.
    ``fp32`` (the baseline) and the base of every chained method always run. A method that does
    not apply ends KILLED with its reason (``SKIPPED_TAG``); one that raises ends FAILED with the
    error (``ERROR_TAG``) and the others go on. ``config.device`` is where fine-tuning and QAT
    train; measurement is on the CPU with ``config.threads`` threads. ``progress(what, done,
    total)`` follows each step in records (fine-tuning batches, scoring, latency timing), named
    ``"[i/n] <method>: <step>"``; it is never called inside a timed call.

    Raises:
        ConfigError: unknown method, a run without checkpoint, data that does not fit the model.
        TrackingError: unknown run id or unreachable tracking store.
    """
    cfg = config or CompressConfig()
    chosen = resolve_methods(cfg.methods)
    run = _get_run(tracker, best_run_id)
    if run.data.tags.get(KIND_TAG) == KIND_COMPRESSION:
        raise ConfigError(
            f"run {best_run_id} is itself a compression run ({run.info.run_name}); pass the run "
            f"it compressed: {run.data.tags.get(PARENT_TAG, '?')}"
        )
    # Two compressions of one run at once would time each other and leave two sets of
    # compress-* runs: one at a time per run (a lock on the store, else a look for live runs).
    with try_store_lock(tracker.uri, f"ecg-sweep:compress:{best_run_id}") as held:
        if held is False or (held is None and _compressing(tracker, best_run_id)):
            raise ConfigError(
                f"run {best_run_id} is being compressed by another process; wait for it to "
                "finish (its compress-* runs are RUNNING)"
            )
        return _compress_held(tracker, run, data, cfg, chosen, progress)


def _compressing(tracker: Tracker, run_id: str) -> bool:
    """Whether compression runs of ``run_id`` are RUNNING (stores without a lock)."""
    return bool(
        tracker.search_runs(
            f"tags.`{PARENT_TAG}` = '{run_id}' and tags.`{KIND_TAG}` = '{KIND_COMPRESSION}' "
            "and attributes.status = 'RUNNING'"
        )
    )


def _compress_held(
    tracker: Tracker,
    run,
    data: PreparedData,
    cfg: CompressConfig,
    chosen: list[Method],
    progress: ProgressHook | None,
) -> CompressionReport:
    best_run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-compress-") as tmp:
        model = _load_trial_model(tracker, best_run_id, tmp)
        model.info = _with_run_decision(run, model.info)
        _check_data(model.info, data)
        train_cfg = _finetune_config(run, model.info, cfg)
        built = _build_all(tracker, run, model, chosen, data, cfg, train_cfg, Path(tmp), progress)
        rows = [b.row if isinstance(b, _Built) else b for b in built]
        ok = [b for b in built if isinstance(b, _Built)]
        if not ok or ok[0].method.name != "fp32":
            for b in ok:
                tracker.end_run(b.row.run_id, "FAILED")
            raise RuntimeError(f"the fp32 baseline could not be measured: {rows[0].reason}")
        try:
            _measure_and_log(tracker, ok, data, cfg, progress)
        except BaseException:
            for b in ok:
                tracker.end_run(b.row.run_id, "FAILED")
            raise
    report = CompressionReport(
        best_run_id,
        model.info.model,
        cfg,
        rows,
        recommend(rows),
        {b.method.name: b.variant.module for b in ok},
    )
    _log_summary(tracker, report)
    _log_cost_check(tracker, run, report)
    return report


def _log_cost_check(tracker: Tracker, run, report: CompressionReport) -> None:
    """Beside a study trial's pre-training cost estimates (``cost_*``, measured on its untrained
    model), the ``onnx_int8`` variant as measured now, and estimate / measured."""
    estimates = run.data.metrics
    try:
        row = report.row("onnx_int8")
    except KeyError:
        return
    if row.status != "ok" or COST_LATENCY_MS_INT8 not in estimates:
        return
    latency, size = row.metrics["latency_ms_p50_bs1"], row.metrics["size_bytes"]
    metrics = {MEASURED_LATENCY_MS_INT8: latency, MEASURED_SIZE_BYTES_INT8: size}
    if latency > 0:
        metrics[COST_LATENCY_RATIO_INT8] = estimates[COST_LATENCY_MS_INT8] / latency
    if size > 0 and COST_SIZE_BYTES_INT8 in estimates:
        metrics[COST_SIZE_RATIO_INT8] = estimates[COST_SIZE_BYTES_INT8] / size
    tracker.log_metrics(run.info.run_id, metrics)


def _start(
    tracker: Tracker, run, method: Method, info: ModelInfo, cfg: CompressConfig, data: PreparedData
) -> str:
    run_id = tracker.start_run(
        compression_run_name(method.name),
        tags={
            KIND_TAG: KIND_COMPRESSION,
            METHOD_TAG: method.name,
            MODEL_TAG: info.model,
        },
        parent_run_id=run.info.run_id,
    )
    tracker.log_dataset(run_id, data, DATASET_CONTEXT_COMPRESSION)
    tracker.log_params(
        run_id,
        {
            "method": method.name,
            "base_method": method.base or "none (the trial's model)",
            "source_run_id": run.info.run_id,
            "threads": cfg.threads,
            "latency_rounds": cfg.latency_rounds,
            "latency_block": cfg.latency_block,
            "latency_warmup": cfg.latency_warmup,
        },
    )
    return run_id


def _build_all(
    tracker: Tracker,
    run,
    model: ECGClassifier,
    methods: list[Method],
    data: PreparedData,
    cfg: CompressConfig,
    train_cfg: TrainConfig,
    tmp: Path,
    progress: ProgressHook | None = None,
) -> list[_Built | CompressionRow]:
    float_models: dict[str, ECGClassifier | None] = {}  # method -> its float model (for chains)
    out: list[_Built | CompressionRow] = []
    for i, method in enumerate(methods, start=1):
        step = None
        if progress is not None:

            def step(what: str, done: int, total: int, tag=f"[{i}/{len(methods)}] {method.name}"):
                progress(f"{tag}: {what}", done, total)

        run_id = _start(tracker, run, method, model.info, cfg, data)
        row = CompressionRow(
            method.name, "ok", run_id, int8=method.int8,
            loads_without_code=method.loads_without_code,
        )  # fmt: skip
        source = model if method.base is None else float_models.get(method.base)
        reason = (
            f"its base method {method.base} did not produce a model"
            if source is None
            else method.applies(source, cfg)
        )
        if reason:
            row.status, row.reason = "skipped", reason
            tracker.set_tags(run_id, {SKIPPED_TAG: reason})
            tracker.end_run(run_id, "KILLED")
            log.info("compress-%s skipped: %s", method.name, reason)
            float_models[method.name] = None
            out.append(row)
            continue

        def on_epoch_end(epoch: int, m: dict[str, float], run_id: str = run_id) -> None:
            tracker.log_metrics(run_id, {f"finetune_{k}": v for k, v in m.items()}, step=epoch)
            log.info(
                "compress: fine-tune epoch %d val_macro_auc %.4f (%.1f s)",
                epoch, m["val_macro_auc"], m["epoch_seconds"],
            )  # fmt: skip

        workdir = tmp / method.name
        workdir.mkdir()
        ctx = BuildContext(data, cfg, train_cfg, workdir, on_epoch_end, step)
        seed_everything(cfg.seed)
        t0 = time.monotonic()
        try:
            log.info("compress-%s: building", method.name)
            variant = method.build(source, ctx)
            accuracy, thresholds = _accuracy(variant, data, cfg, step)
        except KeyboardInterrupt:
            for open_run in [run_id, *(b.row.run_id for b in out if isinstance(b, _Built))]:
                tracker.end_run(open_run, "KILLED")
            raise
        except Exception as e:
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            log.warning("compress-%s failed: %s", method.name, msg, exc_info=log.isEnabledFor(10))
            row.status, row.reason = "failed", msg[:500]
            tracker.set_tags(run_id, {ERROR_TAG: msg[:5000]})
            tracker.end_run(run_id, "FAILED")
            float_models[method.name] = None
            out.append(row)
            continue
        float_models[method.name] = variant.float_model
        row.format, row.runtime = variant.format, variant.runtime
        out.append(_Built(method, row, variant, accuracy, thresholds, time.monotonic() - t0))
    return out


def _measure_and_log(
    tracker: Tracker,
    built: list[_Built],
    data: PreparedData,
    cfg: CompressConfig,
    progress: ProgressHook | None = None,
) -> None:
    x1, x32 = _batch(data.test.x, 1), _batch(data.test.x, 32)
    log.info("compress: timing %d variants (%d threads)", len(built), cfg.threads)
    load_before = os.getloadavg()[0]
    timing = None
    if progress is not None:

        def timing(done: int, total: int) -> None:
            progress(f"timing {len(built)} variants ({cfg.threads} threads)", done, total)

    latency = measure_latency(
        {b.method.name: b.variant.predict for b in built}, x1, x32, cfg, timing
    )
    # Other jobs on the machine skew absolute times (ratios hold better): record the load.
    load = {"load_avg_before_timing": load_before, "load_avg_after_timing": os.getloadavg()[0]}
    metrics: dict[str, dict[str, float]] = {}
    for b in built:
        v = b.variant
        metrics[b.method.name] = {
            "size_bytes": float(file_size(v.artifact)),
            "n_params": float(v.n_params),
            "n_nonzero": float(v.n_nonzero),
            "nonzero_ratio": v.n_nonzero / max(v.n_params, 1),
            **latency[b.method.name].as_metrics(),
            **b.accuracy,
            "build_seconds": b.seconds,
            **load,
        }
    base = metrics["fp32"]
    for b in built:
        m = metrics[b.method.name]
        m.update(_relative(m, base))
        b.row.metrics = m
        policy, rule, temperature = _decision(b.variant)
        info = _info(b.variant).with_thresholds(
            b.thresholds, threshold_policy=policy, at_least_one=rule, temperature=temperature
        )
        info = dataclasses.replace(info, extra={**info.extra, "compression": b.method.name})
        params = {**b.variant.params, "runtime": b.variant.runtime, "format": b.variant.format}
        b.row.params = params
        tracker.log_params(b.row.run_id, params)
        tracker.log_metrics(b.row.run_id, m)
        log_thresholds(tracker, b.row.run_id, data.classes, b.thresholds)
        if b.variant.notes:
            tracker.set_tags(b.row.run_id, {NOTE_TAG: "; ".join(b.variant.notes)})
        b.row.model_uri = _log_variant(tracker, b.row.run_id, b.variant, info, x32)
        tracker.set_tags(b.row.run_id, {MODEL_URI_TAG: b.row.model_uri})
        tracker.end_run(b.row.run_id, "FINISHED")


def _log_variant(
    tracker: Tracker, run_id: str, variant: Variant, info: ModelInfo, x: np.ndarray
) -> str:
    """The deployable artifact as the run's MLflow model. Torch variants are pickled: pt2
    (torch.export) cannot serialize torch.ao-quantized modules, and all torch variants should
    load back alike (MLflow saves a ScriptModule with torch.jit.save under the same flag)."""
    if variant.format == "onnx":
        return log_model(tracker, run_id, Path(variant.artifact), info, x)
    return log_model(tracker, run_id, variant.module, info, x, serialization="pickle")


def _log_summary(tracker: Tracker, report: CompressionReport) -> None:
    run_id = report.best_run_id
    table = report.table()
    tracker.log_text(run_id, table.to_csv(index=False), COMPRESSION_SUMMARY_CSV)
    tracker.log_text(run_id, report.to_markdown() + "\n", COMPRESSION_SUMMARY_MD)
    if (table["status"] == "ok").any():
        tracker.log_figure(run_id, _tradeoff_figure(report), COMPRESSION_TRADEOFF_PLOT)
    tracker.set_tags(
        run_id,
        {
            RECOMMENDED_TAG: report.recommended or "none",
            COMPRESSION_METHODS_TAG: ",".join(r.method for r in report.rows),
        },
    )
