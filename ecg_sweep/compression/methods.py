"""The compression-method registry: name -> Method(build, applies, base), filled by a decorator.

The method modules register themselves when ``ecg_sweep.compression`` imports them (in registry
order); this module never imports them.

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

from ecg_sweep.config import CompressConfig, TrainConfig
from ecg_sweep.data.dataset import PreparedData
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import ECGClassifier

__all__ = [
    "BuildContext",
    "Method",
    "Variant",
    "METHODS",
    "register_method",
    "get_method",
    "resolve_methods",
    "float_copy",
    "linear_share",
]


@dataclass
class BuildContext:
    """What a method's build may use besides the source model."""

    data: PreparedData
    config: CompressConfig
    train_config: TrainConfig  # fine-tuning / QAT: the trial's optimizer settings, fewer epochs
    workdir: Path  # the method's own empty folder for artifacts
    # fit()'s per-epoch hook (logs fine-tuning curves to the method's run)
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
    # fit()'s progress(what, done, total) hook: fine-tuning batches shown to the user
    progress: Callable[[str, int, int], None] | None = None

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
    - ``int8``: the artifact stores int8 weights (the size/speed goals are about these);
    - ``loads_without_code``: the logged artifact loads without running stored code (ONNX, or
      weights rebuilt from the model's metadata); only such variants are recommended and
      registered, so ``predict`` never needs ``--trust-pickle`` for what the project ships.
    """

    name: str
    description: str
    build: BuildFn
    applies: AppliesFn
    base: str | None = None
    int8: bool = False
    loads_without_code: bool = True


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
    loads_without_code: bool = True,
) -> Callable[[BuildFn], BuildFn]:
    """Decorator: register ``build`` under ``name``; duplicate names are an error."""

    def deco(build: BuildFn) -> BuildFn:
        if name in METHODS:
            raise ValueError(f"compression method {name!r} is already registered")
        if base is not None and base not in METHODS:
            raise ValueError(f"method {name!r}: base {base!r} must be registered first")
        METHODS[name] = Method(
            name, description, build, applies or _always, base, int8, loads_without_code
        )
        return build

    return deco


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown compression method {name!r}; valid: {', '.join(METHODS)}"
        ) from None


def resolve_methods(names: Iterable[str] | None) -> list[Method]:
    """The methods to run, in registry order: ``fp32`` always, and every chained method's base."""
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
