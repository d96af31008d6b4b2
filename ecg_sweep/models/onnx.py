"""Loading ONNX models: an ONNX Runtime session that behaves like the torch model it came from.

Compression writes these files (``ecg_sweep.compression.onnx_int8``); prediction and teachers
load them from here, without importing the compression package. The ModelInfo travels inside
the file (``metadata_props[INFO_KEY]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._classifier import INFO_KEY, ModelInfo

__all__ = ["OnnxModule", "load_onnx_file", "read_onnx_info"]


class OnnxModule:
    """An ONNX Runtime session that behaves like the torch model it came from.

    ``module(x)`` maps a (B, 12, T) float32 tensor to (B, C) logits (a tensor); ``run(x)`` does
    the same on numpy. ``eval()``/``cpu()``/``to("cpu")`` return the module, so ``predict_proba``
    and the registry's predict work unchanged. ``info`` is the ModelInfo stored in the file.
    """

    def __init__(self, path: str | Path, info: ModelInfo | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # No busy-waiting between calls: spinning ORT threads would steal the cores from
        # whatever runs next (torch variants are timed interleaved with ORT ones).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{self.path}: cannot load ONNX model: {msg[:200]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.info = info if info is not None else read_onnx_info(self.path)
        self.training = False

    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, 12, T) float32 numpy -> (B, C) float32 logits."""
        return self.session.run(None, {self.input_name: x})[0]

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        arr = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else x
        return torch.from_numpy(self.run(np.ascontiguousarray(arr, dtype=np.float32)))

    forward = __call__

    def eval(self) -> OnnxModule:
        return self

    def train(self, mode: bool = True) -> OnnxModule:
        if mode:
            raise ConfigError(f"{self.path}: an ONNX Runtime model cannot be trained")
        return self

    def cpu(self) -> OnnxModule:
        return self

    def to(self, device: Any = "cpu", *args: Any, **kwargs: Any) -> OnnxModule:
        if torch.device(device).type != "cpu":
            raise ConfigError(f"{self.path}: this ONNX model runs on the CPU only, not {device}")
        return self

    def __repr__(self) -> str:
        return f"OnnxModule({self.path.name}, model={self.info.model if self.info else '?'})"


def read_onnx_info(path: str | Path) -> ModelInfo | None:
    """The ModelInfo embedded in an ONNX file by ecg-sweep's exporter, if any."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == INFO_KEY:
            return ModelInfo.from_dict(json.loads(prop.value))
    return None


def load_onnx_file(
    path: str | Path, info: ModelInfo | None = None, source: str | None = None
) -> tuple[OnnxModule, ModelInfo]:
    """Open an ecg-sweep ``.onnx`` file; ``source`` names it in errors (a path or a URI)."""
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        raise ConfigError(f"{source}: ONNX model file not found")
    module = OnnxModule(path, info)
    if module.info is None:
        raise ConfigError(f"{source}: not an ecg-sweep ONNX model (no {INFO_KEY!r} metadata)")
    return module, module.info
