"""Size and latency measurement, identical for every variant, and the ``fp32`` baseline method.

Size is the byte count of the file a user would ship: ``torch.save(module)`` (what MLflow's
pickle flavour stores) for torch variants, the ``torch.jit.save`` file for FX-quantized ones
(what MLflow stores for a ScriptModule), the single ``.onnx`` file for ONNX ones. Latency is
timed in this process for all variants together, interleaved in rounds, so that the drift of a
shared machine (up to 3x between runs) hits every variant alike and the ratios stay meaningful.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.compression._registry import (
    BuildContext,
    CompressConfig,
    Variant,
    float_copy,
    register_method,
)
from ecg_sweep.models import ECGClassifier

__all__ = [
    "Latency",
    "count_weights",
    "measure_latency",
    "torch_threads",
    "torch_variant",
    "traced_variant",
    "torch_predict",
]

TORCH_RUNTIME = f"torch {torch.__version__.split('+')[0]}"

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


def torch_predict(module: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """numpy (B, 12, T) -> numpy logits, the form every runtime is timed in."""

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return predict


def _file_variant(
    shipped: nn.Module,
    counted: nn.Module,
    path: Path,
    fmt: str,
    float_model: ECGClassifier | None,
    params: Mapping[str, Any] | None,
    notes: list[str] | None,
) -> Variant:
    """A torch variant whose artifact ``path`` holds ``shipped``; weights counted on ``counted``."""
    n, nz = count_weights(counted)
    return Variant(
        module=shipped,
        predict=torch_predict(shipped),
        artifact=path,
        format=fmt,
        runtime=TORCH_RUNTIME,
        n_params=n,
        n_nonzero=nz,
        float_model=float_model,
        params=dict(params or {}),
        notes=list(notes or []),
    )


def torch_variant(
    module: nn.Module,
    ctx: BuildContext,
    float_model: ECGClassifier | None,
    params: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> Variant:
    """Save ``module`` whole (the pickled file MLflow's pickle flavour ships) and describe it."""
    module = module.cpu().eval()
    path = ctx.workdir / "model.pt"
    torch.save(module, path)
    return _file_variant(module, module, path, "torch", float_model, params, notes)


def traced_variant(
    module: nn.Module,
    ctx: BuildContext,
    float_model: ECGClassifier | None,
    params: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> Variant:
    """Ship ``module`` as TorchScript (``torch.jit.trace`` on a (2, 12, T) batch, batch dim free).

    For torch.ao FX-quantized models: pickling their GraphModule does not load back (unpickling
    re-traces it before the quantized convs have their state), while the traced program does.
    """
    module = module.cpu().eval()
    example = torch.from_numpy(np.asarray(ctx.data.train.x[:2], dtype=np.float32))
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings on timm's shape asserts (shapes are fixed) and TorchScript deprecation.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example)
        path = ctx.workdir / "model.pt"
        torch.jit.save(traced, str(path))  # deprecated in favour of torch.export: see above
    params = {**(params or {}), "serialization": "TorchScript (torch.jit.trace)"}
    # Weights counted on the eager module: a ScriptModule hides packed weights.
    return _file_variant(traced, module, path, "torchscript", float_model, params, notes)


@register_method("fp32", "the trial's float32 model, measured exactly like the others")
def fp32(model: ECGClassifier, ctx: BuildContext) -> Variant:
    m = float_copy(model)
    return torch_variant(m, ctx, m)


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
    x32: np.ndarray,
    config: CompressConfig,
) -> dict[str, Latency]:
    """Time every predictor on (1, 12, T) and (32, 12, T) float32 inputs, interleaved.

    Each predictor is warmed up first; then ``latency_rounds`` rounds each time a block of
    ``latency_block`` single-record calls and one 32-record call per predictor, in an order
    rotated every round. Percentiles are over all timed calls. ``torch`` uses
    ``config.threads`` threads here; ORT sessions were created with the same count.
    """
    names = list(predictors)
    bs1: dict[str, list[float]] = {n: [] for n in names}
    bs32: dict[str, list[float]] = {n: [] for n in names}
    with torch_threads(config.threads):
        for n in names:
            for _ in range(config.latency_warmup):
                predictors[n](x1)
            predictors[n](x32)
        for r in range(config.latency_rounds):
            shift = r % len(names)
            for n in names[shift:] + names[:shift]:
                fn = predictors[n]
                for _ in range(config.latency_block):
                    t = time.perf_counter()
                    fn(x1)
                    bs1[n].append(time.perf_counter() - t)
                t = time.perf_counter()
                fn(x32)
                bs32[n].append(time.perf_counter() - t)
    return {
        n: Latency(
            p50_bs1=float(np.percentile(bs1[n], 50) * 1000),
            p95_bs1=float(np.percentile(bs1[n], 95) * 1000),
            p50_bs32=float(np.percentile(bs32[n], 50) * 1000),
        )
        for n in names
    }


def file_size(path: Path) -> int:
    return Path(path).stat().st_size
