"""Frozen configuration objects, passed explicitly from the CLI into the library.

Field names are the parameter names used everywhere: search space, factory kwargs, MLflow params.
Derive a changed copy with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_sweep.data.ptbxl import TEST_FOLDS, TRAIN_FOLDS, VAL_FOLDS
from ecg_sweep.errors import ConfigError

__all__ = [
    "DataConfig",
    "TrainConfig",
    "TRAIN_FIELDS",
    "THRESHOLD_POLICIES",
    "SweepConfig",
    "CompressConfig",
    "split_params",
]


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, task, sampling rate, splits and preprocessing to use."""

    root: Path | None = None
    sampling_rate: int = 100
    task: str = "superdiagnostic"
    train_folds: tuple[int, ...] = TRAIN_FOLDS
    val_folds: tuple[int, ...] = VAL_FOLDS
    test_folds: tuple[int, ...] = TEST_FOLDS
    standardize: str = "global"
    cache_dir: Path | None = None
    on_bad_record: str = "error"
    workers: int | None = field(default=None, compare=False)


# How validation sets the decision thresholds (metrics.thresholds_for_policy): f1 per class,
# exact_match jointly for subset accuracy, fixed 0.5.
THRESHOLD_POLICIES: tuple[str, ...] = ("f1", "exact_match", "fixed")


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained; the same object drives sweeps, ``train``, fine-tuning and QAT."""

    max_epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    patience: int = 5  # epochs without a better val_macro_auc before stopping
    grad_clip: float = 1.0  # max grad norm; 0 disables
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast (bf16 where supported, else fp16) on CUDA only
    channels_last: bool = True  # CUDA only
    distill_alpha: float = 0.5  # DeiT with a teacher: weight of the label loss
    distill_temperature: float = 2.0
    n_bootstrap: int = 1000  # resamples for the test macro AUROC confidence interval
    threshold_policy: str = "fixed"  # THRESHOLD_POLICIES; fixed: measured (README, Decisions)
    at_least_one: bool = True  # a record where no class passes gets its most probable class
    calibrate: bool = False  # temperature scaling fitted on validation, stored in the model

    # Signal augmentation of training batches (never validation or test), seeded by ``seed``.
    # Strengths are relative: amplitude factor U(1 - s, 1 + s); noise and baseline wander as a
    # share of the record's standard deviation; time shift as a share of the record length
    # (circular); lead dropout as the probability of zeroing each lead.
    augment: bool = False
    aug_scale: float = 0.1
    aug_noise: float = 0.05
    aug_wander: float = 0.1
    aug_shift: float = 0.1
    aug_lead_dropout: float = 0.1

    def __post_init__(self) -> None:
        _check(
            [
                (self.max_epochs >= 1, "max_epochs must be >= 1"),
                (self.batch_size >= 2, "batch_size must be >= 2"),
                (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
                (
                    self.optimizer in ("adam", "adamw", "sgd"),
                    "optimizer must be adam, adamw or sgd",
                ),
                (self.lr > 0, "lr must be > 0"),
                (self.weight_decay >= 0, "weight_decay must be >= 0"),
                (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
                (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
                (self.patience >= 1, "patience must be >= 1"),
                (self.grad_clip >= 0, "grad_clip must be >= 0"),
                (0 <= self.distill_alpha <= 1, "distill_alpha must be in [0, 1]"),
                (self.distill_temperature > 0, "distill_temperature must be > 0"),
                (self.n_bootstrap >= 0, "n_bootstrap must be >= 0"),
                (
                    self.threshold_policy in THRESHOLD_POLICIES,
                    f"threshold_policy must be one of {', '.join(THRESHOLD_POLICIES)}",
                ),
                *(
                    (0 <= getattr(self, k) <= 1, f"{k} must be in [0, 1]")
                    for k in ("aug_scale", "aug_noise", "aug_wander", "aug_shift")
                ),
                (0 <= self.aug_lead_dropout < 1, "aug_lead_dropout must be in [0, 1)"),
            ]
        )


TRAIN_FIELDS: frozenset[str] = frozenset(TrainConfig.__dataclass_fields__)


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat parameter dict into (model params, TrainConfig fields): one name each."""
    model = {k: v for k, v in params.items() if k not in TRAIN_FIELDS}
    train = {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    return model, train


@dataclass(frozen=True)
class SweepConfig:
    """One ``ecg-sweep optimize`` invocation."""

    model: str
    n_trials: int | None = 20  # trials this invocation runs (Optuna semantics)
    total_trials: int | None = None  # stop when the study holds this many finished trials
    timeout: float | None = None  # seconds for this invocation
    study_name: str | None = None  # default "<model>-sweep"
    storage: str | None = None  # default sqlite:///optuna.db in the working directory
    tracking_uri: str | None = None
    experiment: str | None = None  # default: tracking.contract.experiment_name(model)
    sampler: str = "tpe"
    pruner: str = "median"
    max_epochs: int = 10
    n_jobs: int = 1
    trial_timeout: float | None = None
    seed: int = 0
    search_space: tuple[tuple[str, object], ...] = ()  # overrides from --search-space
    search_space_file: str | None = None
    teacher: str | None = None
    trust_pickle: bool = False  # load a teacher that only unpickles (runs the store's code)
    preset: str | None = None
    fixed: tuple[tuple[str, object], ...] = ()  # --set key=value (not searched)
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 2
    system_metrics: bool = False  # MLflow system metrics (CPU, memory, GPU) on every trial run
    # Budgets: a trial whose cost, measured before training, breaks one is not trained.
    max_latency_ms: float | None = None  # ONNX Runtime int8, batch 1, p50, CPU
    max_size_mb: float | None = None  # the int8 ONNX file, in 10^6 bytes
    max_epoch_seconds: float | None = None  # projected training + validation time of one epoch
    # Without budgets: stop a trial projected to train more than this many times slower per
    # epoch than the family's default configuration on the same data (0: off).
    max_cost_ratio: float = 10.0
    cost_probe: bool = True  # measure every trial's cost before training (needed by budgets)

    def __post_init__(self) -> None:
        for flag, value in (
            ("--max-latency-ms", self.max_latency_ms),
            ("--max-size-mb", self.max_size_mb),
            ("--max-epoch-seconds", self.max_epoch_seconds),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"{flag} must be > 0, got {value}")
        if not (self.max_cost_ratio == 0 or self.max_cost_ratio >= 1):
            raise ConfigError(
                f"--max-cost-ratio must be 0 (off) or >= 1, got {self.max_cost_ratio}"
            )
        if self.has_budgets and not self.cost_probe:
            raise ConfigError("--no-cost-probe: budgets need the cost measured before training")

    @property
    def has_budgets(self) -> bool:
        return any(
            v is not None for v in (self.max_latency_ms, self.max_size_mb, self.max_epoch_seconds)
        )

    @property
    def guard_ratio(self) -> float:
        """The default guard's ratio; 0 when it is off (turned off, or budgets given)."""
        if not self.cost_probe or self.has_budgets:
            return 0.0
        return self.max_cost_ratio

    @property
    def resolved_study_name(self) -> str:
        return self.study_name or f"{self.model}-sweep"


@dataclass(frozen=True)
class CompressConfig:
    """How the best trial's model is compressed and measured (one object per ``compress`` call).

    Field names are the MLflow param keys of the compression runs.
    """

    methods: tuple[str, ...] | None = None  # None: every registered method
    threads: int = 2  # torch.set_num_threads / ORT intra_op_num_threads while timing
    finetune_epochs: int = 3  # fit() epochs after structured pruning and for QAT
    finetune_distill: bool = True  # the unpruned fp32 model teaches the pruned one
    finetune_lr_scale: float = 0.5  # fine-tune lr = the trial's lr x this
    prune_amount: float = 0.4  # prune_l1_unstructured: fraction of each conv/linear weight zeroed
    structured_ratio: float = 0.4  # prune_structured: fraction of channels / head dims removed
    calibration_batches: int = 8  # training batches seen by static-quantization observers
    calibration_batch_size: int = 32
    onnx_calibration: str = "auto"  # minmax | percentile | entropy | auto (per family)
    latency_warmup: int = 10  # untimed bs1 calls per variant before timing
    latency_rounds: int = 12  # rounds over all variants (interleaved: drift hits all alike)
    latency_block: int = 10  # timed bs1 calls per variant per round
    n_bootstrap: int = 200  # resamples for the test macro AUROC confidence interval
    seed: int = 0
    device: str = "cpu"  # where fine-tuning / QAT train (measurement is always on CPU)

    def __post_init__(self) -> None:
        _check(
            [
                (self.threads >= 1, "threads must be >= 1"),
                (self.finetune_epochs >= 1, "finetune_epochs must be >= 1"),
                (self.finetune_lr_scale > 0, "finetune_lr_scale must be > 0"),
                (0 < self.prune_amount < 1, "prune_amount must be in (0, 1)"),
                (0 < self.structured_ratio < 1, "structured_ratio must be in (0, 1)"),
                (self.calibration_batches >= 1, "calibration_batches must be >= 1"),
                (self.calibration_batch_size >= 1, "calibration_batch_size must be >= 1"),
                (
                    self.onnx_calibration in ("auto", "minmax", "percentile", "entropy"),
                    "onnx_calibration must be auto, minmax, percentile or entropy",
                ),
                (self.latency_rounds >= 1, "latency_rounds must be >= 1"),
                (self.latency_block >= 1, "latency_block must be >= 1"),
                (self.latency_warmup >= 0, "latency_warmup must be >= 0"),
            ]
        )
