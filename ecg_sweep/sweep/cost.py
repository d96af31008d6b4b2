"""What a trial will cost, measured on its untrained model before the first epoch.

The weights are random, but parameter count, the int8 file's size, CPU latency and training
speed depend on the architecture alone, so they are known before anything trains:

- parameters;
- the deployable int8 artifact: the same ONNX export + ONNX Runtime static QDQ per-channel
  quantization as compression's ``onnx_int8``, calibrated on a few training batches; its size;
- batch-1 CPU latency p50 of that int8 file and of the torch fp32 model, timed as compression
  times them (fixed threads, warm-up, interleaved blocks), only shorter;
- the projected seconds of one epoch (training + validation) from a few timed optimizer steps.

Budgets (``--max-latency-ms``, ``--max-size-mb``, ``--max-epoch-seconds``) and the default
guard (``--max-cost-ratio`` x the family's default configuration) turn these into Optuna
constraints: ``value / limit - 1`` per constraint, feasible when <= 0 (Optuna's convention), so
violations of different units add up comparably in TPE's ranking of infeasible trials.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_sweep.compression.baseline import torch_predict
from ecg_sweep.compression.measure import file_size, measure_latency
from ecg_sweep.compression.onnx_int8 import CALIBRATION, export_onnx, quantize_onnx_int8
from ecg_sweep.config import CompressConfig, SweepConfig, TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.engine import predict_proba, time_train_steps
from ecg_sweep.models import ECGClassifier
from ecg_sweep.models.onnx import OnnxModule
from ecg_sweep.tracking.contract import (
    COST_EPOCH_SECONDS,
    COST_LATENCY_MS_FP32,
    COST_LATENCY_MS_INT8,
    COST_PARAMS,
    COST_PROBE_SECONDS,
    COST_SIZE_BYTES_INT8,
)

__all__ = [
    "CONSTRAINTS_ATTR",
    "COST_ATTR",
    "INFEASIBLE_ATTR",
    "REFERENCE_ATTR",
    "ProbeSettings",
    "TrialCost",
    "check_cost",
    "epoch_seconds",
    "probe_cost",
]

log = logging.getLogger(__name__)

COST_ATTR = "cost"  # trial user attr: the TrialCost measured before training
CONSTRAINTS_ATTR = "constraints"  # trial user attr: {name: value / limit - 1}
INFEASIBLE_ATTR = "infeasible"  # trial user attr: the reason a trial was not trained
REFERENCE_ATTR = "cost_reference"  # study user attr: the family default's epoch seconds


@dataclass(frozen=True)
class ProbeSettings:
    """How much the probe measures: small, since it runs before every trial."""

    train_steps: int = 3  # timed optimizer steps at most (after one untimed warm-up step)
    max_share: float = 0.02  # ... and no more than this share of the training they project
    eval_records: int = 32  # validation records timed for the validation share of an epoch
    calibration_batches: int = 2  # training batches calibrating the int8 activation ranges
    calibration_batch_size: int = 16
    threads: int = 2  # as CompressConfig.threads: the estimate must match compression's timing
    latency_warmup: int = 3
    latency_rounds: int = 3
    latency_block: int = 4


@dataclass
class TrialCost:
    params: int
    epoch_seconds: float
    size_bytes_int8: float | None = None
    latency_ms_int8: float | None = None
    latency_ms_fp32: float | None = None
    probe_seconds: float = 0.0
    int8_error: str | None = None  # why the int8 artifact could not be built or timed

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics of what was measured (a probe stopped early measured less)."""
        out = {
            COST_PARAMS: float(self.params),
            COST_EPOCH_SECONDS: self.epoch_seconds,
            COST_SIZE_BYTES_INT8: self.size_bytes_int8,
            COST_LATENCY_MS_INT8: self.latency_ms_int8,
            COST_LATENCY_MS_FP32: self.latency_ms_fp32,
            COST_PROBE_SECONDS: self.probe_seconds,
        }
        return {k: float(v) for k, v in out.items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def epoch_seconds(
    model: ECGClassifier,
    data: PreparedData,
    train_cfg: TrainConfig,
    settings: ProbeSettings = ProbeSettings(),
    stop_above: float | None = None,
) -> float:
    """Projected seconds of one epoch: timed training steps x training records, plus the
    validation forward passes timed on a few records x validation records.

    Runs on a copy (``model`` keeps its initial weights) on the trial's device, inside a forked
    RNG (the trial trains exactly as it would without the probe). Stops timing early once the
    training share alone exceeds ``stop_above`` seconds.
    """
    n_train, n_val = len(data.train), len(data.val)
    limit = None if stop_above is None else stop_above / max(n_train, 1)
    device = train_cfg.device
    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        work = copy.deepcopy(model)
        per_train = time_train_steps(
            work, data, train_cfg, settings.train_steps, limit, settings.max_share
        )
        train_s = per_train * n_train
        if stop_above is not None and train_s > stop_above:
            return train_s
        # A few records (an eighth of a small validation set at most: timing it all would
        # cost a whole validation pass).
        k = min(settings.eval_records, max(2, n_val // 8), n_val)
        val_s = 0.0
        if k:
            x = data.val.x[:k]
            predict_proba(work, x[:2], device, amp=train_cfg.amp)  # warm-up
            t = time.perf_counter()
            predict_proba(work, x, device, batch_size=k, amp=train_cfg.amp)
            val_s = (time.perf_counter() - t) / k * n_val
        del work
    return train_s + val_s


def _int8_cost(
    model: ECGClassifier, data: PreparedData, settings: ProbeSettings, seed: int
) -> tuple[float, float, float]:
    """(int8 file bytes, int8 p50 bs1 ms, fp32 p50 bs1 ms): compression's onnx_int8, shortened."""
    cpu = copy.deepcopy(model).cpu().eval()
    x = data.train.x
    rng = np.random.default_rng(seed)
    n = min(len(x), settings.calibration_batches * settings.calibration_batch_size)
    idx = np.sort(rng.choice(len(x), size=n, replace=False))
    calib = np.asarray(x[idx], dtype=np.float32)
    batches = [
        calib[i : i + settings.calibration_batch_size]
        for i in range(0, n, settings.calibration_batch_size)
    ]
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-cost-") as d:
        fp32 = export_onnx(cpu, Path(d) / "model.fp32.onnx", calib[:2])
        int8 = Path(d) / "model.int8.onnx"
        calibration = CALIBRATION.get(cpu.info.model, "minmax")
        quantize_onnx_int8(fp32, int8, batches, cpu.info, calibration)
        size = float(file_size(int8))
        session = OnnxModule(int8, cpu.info, threads=settings.threads)
        timing = CompressConfig(
            threads=settings.threads,
            latency_warmup=settings.latency_warmup,
            latency_rounds=settings.latency_rounds,
            latency_block=settings.latency_block,
        )
        x1 = np.ascontiguousarray(calib[:1])
        lat = measure_latency({"int8": session.run, "fp32": torch_predict(cpu)}, x1, None, timing)
        del session
    return size, lat["int8"].p50_bs1, lat["fp32"].p50_bs1


def probe_cost(
    model: ECGClassifier,
    data: PreparedData,
    train_cfg: TrainConfig,
    settings: ProbeSettings = ProbeSettings(),
    stop_above_epoch_seconds: float | None = None,
    deployment: bool = True,
) -> TrialCost:
    """Measure ``model``'s cost before it trains (see the module docstring).

    The epoch projection comes first: when it exceeds ``stop_above_epoch_seconds`` the trial
    will not train anyway, and the int8 export (the slow part of the probe) is skipped.
    """
    t0 = time.perf_counter()
    cost = TrialCost(
        params=sum(p.numel() for p in model.parameters()),
        epoch_seconds=epoch_seconds(model, data, train_cfg, settings, stop_above_epoch_seconds),
    )
    over = stop_above_epoch_seconds is not None and cost.epoch_seconds > stop_above_epoch_seconds
    if deployment and not over:
        try:
            size, lat8, lat32 = _int8_cost(model, data, settings, train_cfg.seed)
        except Exception as e:  # an export/quantization gap must not cost a trainable trial
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            cost.int8_error = f"{type(e).__name__}: {first}"[:300]
            log.warning("cost probe: no int8 measurement: %s", cost.int8_error)
        else:
            cost.size_bytes_int8, cost.latency_ms_int8, cost.latency_ms_fp32 = size, lat8, lat32
    cost.probe_seconds = time.perf_counter() - t0
    return cost


def check_cost(
    cost: TrialCost, cfg: SweepConfig, reference_epoch_seconds: float | None
) -> tuple[dict[str, float], str | None]:
    """(Optuna constraint values, the one-line reason it is infeasible or None).

    One constraint per budget given (``value / budget - 1``); without budgets, the default
    guard's ``epoch_seconds / (ratio x reference) - 1``. A measurement the probe skipped (it
    stopped early) is not a constraint of this trial.
    """
    values: dict[str, float] = {}
    reasons: list[str] = []

    def limit(name: str, value: float | None, bound: float | None, text: str) -> None:
        # ``text`` is formatted with value and bound once both are known.
        if bound is None or value is None:
            return
        values[name] = value / bound - 1.0
        if value > bound:
            reasons.append(text.format(value=value, bound=bound))

    limit(
        "latency_ms_int8",
        cost.latency_ms_int8,
        cfg.max_latency_ms,
        "int8 batch-1 latency {value:.2f} ms > --max-latency-ms {bound:g}",
    )
    limit(
        "size_mb_int8",
        None if cost.size_bytes_int8 is None else cost.size_bytes_int8 / 1e6,
        cfg.max_size_mb,
        "int8 size {value:.2f} MB > --max-size-mb {bound:g}",
    )
    limit(
        "epoch_seconds",
        cost.epoch_seconds,
        cfg.max_epoch_seconds,
        "projected {value:.1f} s per epoch > --max-epoch-seconds {bound:g}",
    )
    if cost.int8_error and (cfg.max_latency_ms is not None or cfg.max_size_mb is not None):
        # A budget that cannot be checked is not met: the trial would train blind.
        reasons.append(f"int8 cost could not be measured ({cost.int8_error})")
    ratio = cfg.guard_ratio
    if ratio and reference_epoch_seconds:
        limit(
            "cost_ratio",
            cost.epoch_seconds,
            ratio * reference_epoch_seconds,
            f"projected {{value:.1f}} s per epoch is "
            f"{cost.epoch_seconds / reference_epoch_seconds:.1f}x the family default's "
            f"{reference_epoch_seconds:.1f} s (--max-cost-ratio {ratio:g}; 0 turns the guard off)",
        )
    return values, ("; ".join(reasons) or None)
