"""Size, weight and latency measurement, identical for every variant.

Size is the byte count of the file a user would ship: ``torch.save(module)`` (what MLflow's
pickle flavour stores) for torch variants, the ``torch.jit.save`` file for FX-quantized ones
(what MLflow stores for a ScriptModule), the single ``.onnx`` file for ONNX ones. Latency is
timed in this process for all variants together, interleaved in rounds, so that the drift of a
shared machine (up to 3x between runs) hits every variant alike and the ratios stay meaningful.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.config import CompressConfig

__all__ = [
    "Latency",
    "count_weights",
    "file_size",
    "measure_latency",
    "torch_threads",
]

# state_dict entries that are statistics or quantization bookkeeping, not weights.
_NOT_WEIGHTS = ("running_mean", "running_var", "num_batches_tracked", "scale", "zero_point")


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    # Quantized Linear keeps (weight, bias) in a packed-params tuple inside its state_dict.
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def count_weights(module: nn.Module) -> tuple[int, int]:
    """(weights, nonzero weights) of a float or torch.ao-quantized module.

    Counted over the state_dict so quantized modules (whose weights are no longer
    ``nn.Parameter``) count like float ones; batch-norm statistics, quantization scales and
    zero points, observers and the input adapter's standardization buffers are not weights.
    """
    total = nonzero = 0
    for key, value in module.state_dict().items():
        leaf = key.rsplit(".", 1)[-1]
        if (
            leaf in _NOT_WEIGHTS
            or "activation_post_process" in key
            or "fake_quant" in key
            or key.startswith("adapter.")
        ):
            continue
        for t in _tensors(value):
            if not t.is_floating_point() and not t.is_quantized:
                continue
            v = t.int_repr() if t.is_quantized else t
            total += v.numel()
            # Symmetric int8 weights have zero point 0, so int_repr() == 0 is a zero weight.
            nonzero += int(torch.count_nonzero(v))
    return total, nonzero


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class Latency:
    p50_bs1: float  # milliseconds
    p95_bs1: float
    p50_bs32: float

    def as_metrics(self) -> dict[str, float]:
        return {
            "latency_ms_p50_bs1": self.p50_bs1,
            "latency_ms_p95_bs1": self.p95_bs1,
            "latency_ms_p50_bs32": self.p50_bs32,
        }


def measure_latency(
    predictors: Mapping[str, Callable[[np.ndarray], Any]],
    x1: np.ndarray,
    x32: np.ndarray | None,
    config: CompressConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Latency]:
    """Time every predictor on (1, 12, T) and (32, 12, T) float32 inputs, interleaved.

    Each predictor is warmed up first; then ``latency_rounds`` rounds each time a block of
    ``latency_block`` single-record calls and one 32-record call per predictor, in an order
    rotated every round. Percentiles are over all timed calls. ``torch`` uses
    ``config.threads`` threads here; ORT sessions were created with the same count.
    ``progress(done, total)`` (records run) is called between blocks, outside the timed calls.
    ``x32=None`` times batch 1 only (``p50_bs32`` is NaN): the cheap form a cost probe uses.
    """
    names = list(predictors)
    bs1: dict[str, list[float]] = {n: [] for n in names}
    bs32: dict[str, list[float]] = {n: [] for n in names}
    with torch_threads(config.threads):
        for n in names:
            for _ in range(config.latency_warmup):
                predictors[n](x1)
            if x32 is not None:
                predictors[n](x32)
        per_round = len(names) * (config.latency_block * len(x1) + (0 if x32 is None else len(x32)))
        for r in range(config.latency_rounds):
            if progress is not None:
                progress(r * per_round, config.latency_rounds * per_round)
            shift = r % len(names)
            for n in names[shift:] + names[:shift]:
                fn = predictors[n]
                for _ in range(config.latency_block):
                    t = time.perf_counter()
                    fn(x1)
                    bs1[n].append(time.perf_counter() - t)
                if x32 is None:
                    continue
                t = time.perf_counter()
                fn(x32)
                bs32[n].append(time.perf_counter() - t)
    if progress is not None:
        progress(config.latency_rounds * per_round, config.latency_rounds * per_round)
    return {
        n: Latency(
            p50_bs1=float(np.percentile(bs1[n], 50) * 1000),
            p95_bs1=float(np.percentile(bs1[n], 95) * 1000),
            p50_bs32=float(np.percentile(bs32[n], 50) * 1000) if bs32[n] else float("nan"),
        )
        for n in names
    }


def file_size(path: Path) -> int:
    return Path(path).stat().st_size
