"""How torch variants ship (pickled module or TorchScript), and the ``fp32`` baseline method.

``fp32`` is the trial's float model measured exactly like every other variant in the same
process; every ratio and delta is relative to it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.compression.measure import count_weights
from ecg_sweep.compression.methods import BuildContext, Variant, float_copy, register_method
from ecg_sweep.models import ECGClassifier

__all__ = ["TORCH_RUNTIME", "fp32", "torch_predict", "torch_variant", "traced_variant"]

TORCH_RUNTIME = f"torch {torch.__version__.split('+')[0]}"


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
