"""Compression of the best trial's model: pruned / quantized / exported variants, each measured.

Methods are looked up by name in :data:`METHODS` (filled by :func:`register_method`):

- ``fp32``: the baseline, measured like the others in the same process;
- ``prune_l1_unstructured``, ``quant_dynamic_int8``, ``quant_static_int8``, ``quant_qat_int8``:
  the seed's methods, kept as honest ablations;
- ``prune_structured``, ``onnx_fp32``, ``onnx_int8``, ``prune_structured+onnx_int8``: what
  pays on CPU (channels physically removed; ONNX Runtime static QDQ int8).

:func:`compress_run` runs them on a trial's checkpoint and logs one nested MLflow run each.
"""

from ecg_sweep.compression._registry import (
    METHODS,
    BuildContext,
    CompressConfig,
    Method,
    Variant,
    get_method,
    register_method,
    resolve_methods,
)
from ecg_sweep.compression._registry import _ensure_loaded as _load_methods
from ecg_sweep.compression.run import CompressionReport, CompressionRow, compress_run

_load_methods()  # the method modules, in registry order (a chained method after its base)

from ecg_sweep.compression.onnx import OnnxModule  # noqa: E402

__all__ = [
    "METHODS",
    "BuildContext",
    "CompressConfig",
    "CompressionReport",
    "CompressionRow",
    "Method",
    "OnnxModule",
    "Variant",
    "compress_run",
    "get_method",
    "register_method",
    "resolve_methods",
]
