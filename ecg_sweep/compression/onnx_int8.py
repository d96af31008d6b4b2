"""ONNX export and ONNX Runtime static int8 (QDQ, per-channel): the CPU path that pays.

The whole ``ECGClassifier`` is exported, input adapter included, so the ``.onnx`` file takes raw
(B, 12, T) float32 millivolts with a dynamic batch dim. Static QDQ quantization is calibrated on
training batches; ORT's *dynamic* quantization is not offered: on CNNs it is 2.5-6x slower than
torch fp32 on these CPUs (DESIGN.md §5). The ModelInfo travels inside the file
(``metadata_props[INFO_KEY]``) and in the MLflow model's metadata. Loading these files is
:mod:`ecg_sweep.models.onnx`'s job: prediction and teachers never import this package.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_sweep.compression.methods import BuildContext, Variant, float_copy, register_method
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import INFO_KEY, ECGClassifier, ModelInfo
from ecg_sweep.models.onnx import OnnxModule

__all__ = [
    "CALIBRATION",
    "export_onnx",
    "quantize_onnx_int8",
    "onnx_weight_counts",
    "onnx_fp32",
    "onnx_int8",
    "ort_runtime",
]

log = logging.getLogger(__name__)

INPUT_NAME = "ecg"
OUTPUT_NAME = "logits"
# Weight-carrying ops. Leaving LayerNorm/Softmax/GELU/Resize in float costs little time on CPU
# and keeps transformer accuracy (int8 LayerNorm/Softmax are where QDQ loses it).
OP_TYPES = ("Conv", "MatMul", "Gemm")
# Activation calibration per family (measured on the synthetic benchmark, default sizes):
# EfficientNetV2's SiLU/squeeze-excite activations have rare large outliers that MinMax ranges
# stretch over (test AUROC -0.023); clipping at the 99.99th percentile keeps it (-0.002).
# Transformers lose nothing with MinMax (-0.0004 on ViT), which calibrates 3x faster.
CALIBRATION: dict[str, str] = {"efficientnetv2": "percentile"}
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
PERCENTILE = 99.99


def ort_runtime() -> str:
    """'onnxruntime <version>' (the runtime param of ONNX variants)."""
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _finalize(path: Path, info: ModelInfo) -> None:
    """Write the ModelInfo into the file and drop per-node debug data before it ships.

    The dynamo exporter annotates every node with its Python stack and module path
    (``metadata_props``/``doc_string``): about 1 MB on EfficientNetV2, 5% of its int8 file,
    and nothing ONNX Runtime reads.
    """
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    props = [p for p in model.metadata_props if p.key != INFO_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = INFO_KEY, json.dumps(info.as_dict())
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    # The dynamo exporter and ORT's quantizer log progress and known-harmless warnings.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: ECGClassifier, path: str | Path, example: np.ndarray) -> Path:
    """Export ``model`` (adapter included) to one self-contained ``.onnx`` file.

    ``torch.onnx.export(dynamo=True)`` on a (2, 12, T) example (a batch of 1 would be
    specialized away) with a dynamic batch dim; ``external_data=False`` keeps every weight in
    the file, so its size is the size a user ships. The ModelInfo is written into the file.
    """
    path = Path(path)
    m = float_copy(model)
    x = torch.from_numpy(np.ascontiguousarray(example[:2], dtype=np.float32))
    if len(x) < 2:
        raise ConfigError("ONNX export needs an example batch of at least 2 records")
    with _quiet_export():
        program = torch.onnx.export(
            m,
            (x,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
            external_data=False,
            verbose=False,
        )
        program.save(str(path), external_data=False)
    _finalize(path, m.info)
    return path


class _Calibration:
    """ORT CalibrationDataReader over training batches (raw (B, 12, T) float32)."""

    def __init__(self, batches: list[np.ndarray]):
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}


def quantize_onnx_int8(
    fp32_path: Path,
    out_path: Path,
    batches: list[np.ndarray],
    info: ModelInfo,
    calibration: str = "minmax",
) -> dict[str, Any]:
    """Static QDQ int8 of ``fp32_path`` into ``out_path``; returns the settings (MLflow params).

    Weights int8 per channel (symmetric), activations uint8 (asymmetric, ranges calibrated on
    ``batches`` with ``calibration``: minmax, percentile or entropy): the u8s8 combination
    ORT's x86 VNNI kernels run fastest.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Calibration, CalibrationDataReader):
        pass

    if calibration not in CALIBRATION_METHODS:
        raise ConfigError(
            f"ONNX calibration {calibration!r} unknown; valid: {', '.join(CALIBRATION_METHODS)}"
        )
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[calibration]
    # Float32 biases: a quantized bias needs its own per-channel scale and int32 zero-point
    # tables (8 more bytes per output channel; 4% of EfficientNetV2's int8 file) and was
    # measured no faster on ORT's CPU kernels.
    extra: dict[str, Any] = {"QuantizeBias": False}
    if calibration == "percentile":
        extra["CalibPercentile"] = PERCENTILE

    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    with _quiet_export():
        # Shape inference + graph optimizations (fold BN into conv, fuse) before quantizing.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre),
            str(out_path),
            Reader(batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(OP_TYPES),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options=extra,
            use_external_data_format=False,
        )
    pre.unlink(missing_ok=True)
    _finalize(out_path, info)
    return {
        "quant_format": "QDQ",
        "per_channel": True,
        "weight_type": "int8",
        "activation_type": "uint8",
        "calibrate_method": calibration + (f" {PERCENTILE}" if calibration == "percentile" else ""),
        "bias": "float32 (QuantizeBias=False)",
        "op_types": ",".join(OP_TYPES),
        "calibration_batches": len(batches),
        "preprocess": "quant_pre_process",
    }


def onnx_weight_counts(path: str | Path) -> tuple[int, int]:
    """(weights, nonzero weights) over the file's weight initializers.

    Quantization scales and zero points and batch-norm statistics are not weights; int8 weights
    and int32 biases of a QDQ model count like their float originals.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    total = nonzero = 0
    for init in model.graph.initializer:
        name = init.name
        if name.endswith(("_scale", "_zero_point")) or "running_" in name:
            continue
        if init.data_type not in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.INT8,
            onnx.TensorProto.UINT8,
            onnx.TensorProto.INT32,
        ):
            continue  # int64 shape constants
        arr = numpy_helper.to_array(init)
        if arr.ndim == 0 or name.startswith("adapter."):
            continue  # scalars are constants of the graph, the adapter's stats are not weights
        if init.data_type == onnx.TensorProto.INT32 and not name.endswith("_quantized"):
            continue  # int32 constants that are not quantized biases
        total += arr.size
        nonzero += int(np.count_nonzero(arr))
    return total, nonzero


def _onnx_variant(
    path: Path, model: ECGClassifier, ctx: BuildContext, params: dict[str, Any]
) -> Variant:
    module = OnnxModule(path, model.info, threads=ctx.config.threads)
    n, nz = onnx_weight_counts(path)
    return Variant(
        module=module,
        predict=module.run,
        artifact=path,
        format="onnx",
        runtime=ort_runtime(),
        n_params=n,
        n_nonzero=nz,
        float_model=model,
        params={
            "exporter": "torch.onnx.export(dynamo=True)",
            "external_data": False,
            "dynamic_batch": True,
            "adapter": "inside the ONNX graph",
            "intra_op_num_threads": ctx.config.threads,
            **params,
        },
    )


def _example(ctx: BuildContext) -> np.ndarray:
    return np.asarray(ctx.data.train.x[:2], dtype=np.float32)


@register_method("onnx_fp32", "ONNX export run by ONNX Runtime in float32 (the runtime alone)")
def onnx_fp32(model: ECGClassifier, ctx: BuildContext) -> Variant:
    path = export_onnx(model, ctx.workdir / "model.onnx", _example(ctx))
    return _onnx_variant(path, model, ctx, {})


@register_method(
    "onnx_int8",
    "ONNX export + ONNX Runtime static QDQ int8, per-channel, calibrated on training data",
    int8=True,
)
def onnx_int8(model: ECGClassifier, ctx: BuildContext) -> Variant:
    fp32 = export_onnx(model, ctx.workdir / "model.fp32.onnx", _example(ctx))
    batches = [b.numpy() for b in ctx.calibration_batches()]
    path = ctx.workdir / "model.int8.onnx"
    calibration = ctx.config.onnx_calibration
    if calibration == "auto":
        calibration = CALIBRATION.get(model.info.model, "minmax")
    params = quantize_onnx_int8(fp32, path, batches, model.info, calibration)
    fp32.unlink()
    params["calibration_batch_size"] = ctx.config.calibration_batch_size
    return _onnx_variant(path, model, ctx, params)


# Chained: structured pruning (with its fine-tuning) once, then the same int8 export.
register_method(
    "prune_structured+onnx_int8",
    "structured pruning + fine-tuning, then ONNX Runtime static QDQ int8",
    base="prune_structured",
    int8=True,
)(onnx_int8)
