"""Compression of the best trial's model: pruned / quantized / exported variants, each measured.

Methods are looked up by name in :data:`METHODS` (filled by :func:`register_method` when this
package imports the method modules, in registry order):

- ``fp32`` (:mod:`.baseline`): the baseline, measured like the others in the same process;
- ``prune_l1_unstructured``, ``quant_dynamic_int8``, ``quant_static_int8``, ``quant_qat_int8``
  (:mod:`.prune`, :mod:`.quantize`): the reference configuration's methods, kept as honest
  ablations;
- ``prune_structured``, ``onnx_fp32``, ``onnx_int8``, ``prune_structured+onnx_int8``
  (:mod:`.prune`, :mod:`.onnx_int8`): what pays on CPU (channels physically removed; ONNX
  Runtime static QDQ int8).

:func:`compress_run` (:mod:`.compress`) runs them on a trial's checkpoint and logs one nested
MLflow run each; :mod:`.measure` times and sizes every variant the same way.
"""

# Import order is registry order: a chained method after its base.
from ecg_sweep.compression import baseline, prune, quantize  # noqa: F401, I001
from ecg_sweep.compression import onnx_int8  # noqa: F401
from ecg_sweep.compression.compress import (
    MAX_AUC_DROP,
    CompressionReport,
    CompressionRow,
    compress_run,
)
from ecg_sweep.compression.methods import (
    METHODS,
    BuildContext,
    Method,
    Variant,
    get_method,
    register_method,
    resolve_methods,
)

__all__ = [
    "MAX_AUC_DROP",
    "METHODS",
    "BuildContext",
    "CompressionReport",
    "CompressionRow",
    "Method",
    "Variant",
    "compress_run",
    "get_method",
    "register_method",
    "resolve_methods",
]
