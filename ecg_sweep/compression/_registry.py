"""The compression-method registry: name -> Method(build, applies, base), filled by a decorator.

A method turns a float ``ECGClassifier`` into a :class:`Variant`: something that maps raw
(B, 12, T) millivolts to (B, C) logits, plus the one file a user would ship. Methods chain by
``base``: ``prune_structured+onnx_int8`` runs the ``onnx_int8`` build on the float model that
``prune_structured`` produced, so the pruning and its fine-tuning happen once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ecg_sweep.config import TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import ECGClassifier

__all__ = [
    "CompressConfig",
    "BuildContext",
    "Method",
    "Variant",
    "METHODS",
    "register_method",
    "get_method",
    "resolve_methods",
]


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
    onnx_calibration: str = "auto"  # minmax | percentile | entropy | auto (per family, onnx.py)
    latency_warmup: int = 10  # untimed bs1 calls per variant before timing
    latency_rounds: int = 12  # rounds over all variants (interleaved: drift hits all alike)
    latency_block: int = 10  # timed bs1 calls per variant per round
    n_bootstrap: int = 200  # resamples for the test macro AUROC confidence interval
    seed: int = 0
    device: str = "cpu"  # where fine-tuning / QAT train (measurement is always on CPU)

    def __post_init__(self) -> None:
        checks = [
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
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


@dataclass
class BuildContext:
    """What a method's build may use besides the source model."""

    data: PreparedData
    config: CompressConfig
    train_config: TrainConfig  # fine-tuning / QAT: the trial's optimizer settings, fewer epochs
    workdir: Path  # the method's own empty folder for artifacts
    # fit()'s per-epoch hook (logs fine-tuning curves to the method's run)
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None

    def calibration_batches(self) -> list[torch.Tensor]:
        """Training batches (B, 12, T) float32 for observers, shuffled with the config's seed."""
        cfg = self.config
        x = self.data.train.x
        g = torch.Generator().manual_seed(cfg.seed)
        order = torch.randperm(len(x), generator=g).numpy()
        n = min(len(x), cfg.calibration_batches * cfg.calibration_batch_size)
        idx = order[:n]
        return [
            torch.from_numpy(x[sorted(idx[i : i + cfg.calibration_batch_size])]).float()
            for i in range(0, n, cfg.calibration_batch_size)
        ]


@dataclass
class Variant:
    """A compressed model: the callable, its deployable artifact and what produced it.

    ``module`` maps a (B, 12, T) float32 tensor to (B, C) logits and has ``.eval()``;
    ``predict(x)`` does the same on numpy (the form latency is timed in, for every runtime).
    ``float_model`` is the float torch model this variant derives from (the pruned and
    fine-tuned one for pruning methods), which chained methods start from.
    """

    module: Any
    predict: Callable[[Any], Any]
    artifact: Path
    format: str  # "torch" (pickled nn.Module) | "torchscript" | "onnx"
    runtime: str  # "torch 2.14.1" | "onnxruntime 1.32.0"
    n_params: int
    n_nonzero: int
    float_model: ECGClassifier | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


BuildFn = Callable[[ECGClassifier, BuildContext], Variant]
AppliesFn = Callable[[ECGClassifier, CompressConfig], "str | None"]


@dataclass(frozen=True)
class Method:
    """One registered compression method.

    - ``build(model, ctx) -> Variant``: never mutates ``model`` (copy first);
    - ``applies(model, config) -> reason | None``: a reason means the method is skipped (logged);
    - ``base``: the method whose float model is this one's input (None: the trial's model);
    - ``int8``: the artifact stores int8 weights (the size/speed goals are about these).
    """

    name: str
    description: str
    build: BuildFn
    applies: AppliesFn
    base: str | None = None
    int8: bool = False


METHODS: dict[str, Method] = {}


def _always(model: ECGClassifier, config: CompressConfig) -> str | None:
    return None


def register_method(
    name: str,
    description: str,
    *,
    base: str | None = None,
    int8: bool = False,
    applies: AppliesFn | None = None,
) -> Callable[[BuildFn], BuildFn]:
    """Decorator: register ``build`` under ``name``; duplicate names are an error."""

    def deco(build: BuildFn) -> BuildFn:
        if name in METHODS:
            raise ValueError(f"compression method {name!r} is already registered")
        if base is not None and base not in METHODS:
            raise ValueError(f"method {name!r}: base {base!r} must be registered first")
        METHODS[name] = Method(name, description, build, applies or _always, base, int8)
        return build

    return deco


def _ensure_loaded() -> None:
    # Importing the method modules fills the registry (once); import order = registry order:
    # fp32 (benchmark), prune_*, quant_*, onnx_* and the chained prune_structured+onnx_int8.
    from ecg_sweep.compression import benchmark, prune, quantize  # noqa: F401, I001
    from ecg_sweep.compression import onnx  # noqa: F401


def get_method(name: str) -> Method:
    _ensure_loaded()
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown compression method {name!r}; valid: {', '.join(METHODS)}"
        ) from None


def resolve_methods(names: Iterable[str] | None) -> list[Method]:
    """The methods to run, in registry order: ``fp32`` always, and every chained method's base."""
    _ensure_loaded()
    wanted = list(METHODS) if names is None else [n.strip() for n in names if n.strip()]
    chosen = {"fp32"}
    for n in wanted:
        m = get_method(n)
        while m is not None:
            chosen.add(m.name)
            m = METHODS[m.base] if m.base else None
    return [m for name, m in METHODS.items() if name in chosen]


# --- helpers shared by the method modules -----------------------------------------------------


def float_copy(model: ECGClassifier) -> ECGClassifier:
    """An independent CPU eval-mode copy (methods never touch the model they are given)."""
    return copy.deepcopy(model).cpu().eval()


def linear_share(model: nn.Module) -> float:
    """Fraction of the weights that sit in nn.Linear layers (what dynamic int8 can quantize)."""
    total = sum(p.numel() for p in model.parameters())
    lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return lin / max(total, 1)
