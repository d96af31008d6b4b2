"""torch.ao int8 quantization: dynamic (Linear), FX post-training static, FX QAT through fit().

``torch.ao.quantization`` is deprecated (PT2E moved to torchao) but still ships with torch 2.14
and is what the reference configuration used; these methods are kept as honest ablations next to the ONNX
Runtime path. FX static/QAT cannot trace the input adapter (its resampling branch depends on the
input length), so they quantize the backbone and keep the adapter in float in front of it: the
shipped module still takes raw (B, 12, T) millivolts.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from ecg_sweep.compression.baseline import torch_variant, traced_variant
from ecg_sweep.compression.methods import (
    BuildContext,
    Variant,
    float_copy,
    linear_share,
    register_method,
)
from ecg_sweep.config import CompressConfig
from ecg_sweep.engine import fit
from ecg_sweep.models import ECGClassifier

__all__ = ["quant_dynamic_int8", "quant_static_int8", "quant_qat_int8", "quantized_engine"]

# FX-quantized DeiT/ViT concatenate the class (and distillation) tokens with the patch tokens,
# whose quantization parameters differ; torch warns at every forward. The accuracy cost is what
# the method's test metrics record (DeiT lost 0.02-0.09 test AUROC with it), so the warning
# adds nothing to them.
warnings.filterwarnings(
    "ignore", message="All inputs of this cat operator must share", category=UserWarning
)

# Below this share of weights in nn.Linear, dynamic int8 leaves the model essentially float.
MIN_LINEAR_SHARE = 0.5


def quantized_engine() -> str:
    """The torch quantized backend in use (x86 on x86-64 CPUs, qnnpack on ARM)."""
    return torch.backends.quantized.engine


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch.ao.quantization emits a deprecation warning per call, and observers warn about
    # reduce_range on x86: both are known and stated in the module docstring / params.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _dynamic_applies(model: ECGClassifier, config: CompressConfig) -> str | None:
    share = linear_share(model)
    if share < MIN_LINEAR_SHARE:
        return (
            f"dynamic int8 quantizes nn.Linear only, which holds {share:.1%} of the weights of "
            f"this {model.info.model} (a conv net): the model would stay float"
        )
    return None


@register_method(
    "quant_dynamic_int8",
    "torch.ao dynamic int8: Linear weights int8, activations quantized on the fly",
    int8=True,
    applies=_dynamic_applies,
)
def quant_dynamic_int8(model: ECGClassifier, ctx: BuildContext) -> Variant:
    with _quiet():
        q = torch.ao.quantization.quantize_dynamic(
            float_copy(model), {nn.Linear}, dtype=torch.qint8
        )
    return torch_variant(
        q,
        ctx,
        model,
        params={
            "layers": "nn.Linear",
            "weight_dtype": "qint8",
            "engine": quantized_engine(),
            "share_of_weights_quantized": round(linear_share(model), 4),
        },
    )


FLOAT_ADAPTER_NOTE = "the input adapter stays float: FX cannot trace its length-dependent branch"


def _example(model: ECGClassifier, ctx: BuildContext) -> torch.Tensor:
    # (2, 12, T) millivolts -> the backbone's (2, C, H, W) input
    with torch.no_grad():
        return model.adapter(torch.from_numpy(ctx.data.train.x[:2]).float())


@register_method(
    "quant_static_int8",
    "torch.ao FX post-training static int8 of the backbone, calibrated on training batches",
    int8=True,
    loads_without_code=False,  # a TorchScript program
)
def quant_static_int8(model: ECGClassifier, ctx: BuildContext) -> Variant:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    m = float_copy(model)
    engine = quantized_engine()
    batches = ctx.calibration_batches()
    with _quiet():
        prepared = prepare_fx(m.backbone, get_default_qconfig_mapping(engine), (_example(m, ctx),))
        with torch.no_grad():
            for xb in batches:
                prepared(m.adapter(xb))
        qbackbone = convert_fx(prepared)
    q = ECGClassifier(m.adapter, qbackbone, m.info).eval()
    return traced_variant(
        q,
        ctx,
        model,
        params={
            "api": "torch.ao FX (prepare_fx/convert_fx)",
            "qconfig": f"default {engine}",
            "engine": engine,
            "calibration_batches": len(batches),
            "calibration_batch_size": ctx.config.calibration_batch_size,
            "adapter": "float, in front of the int8 backbone",
        },
        notes=[FLOAT_ADAPTER_NOTE],
    )


@register_method(
    "quant_qat_int8",
    "torch.ao FX quantization-aware fine-tuning of the backbone through fit(), then int8",
    int8=True,
    loads_without_code=False,  # a TorchScript program
)
def quant_qat_int8(model: ECGClassifier, ctx: BuildContext) -> Variant:
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    m = float_copy(model)
    engine = quantized_engine()
    with _quiet():
        # Traced in eval mode: timm bakes `self.training` branches (dropout, drop-path, DeiT's
        # two-head output) into the FX graph, and the graph we ship must be the inference one.
        # Batch norms still train (fused conv-bn QAT modules follow .train()).
        prepared = prepare_qat_fx(
            m.backbone, get_default_qat_qconfig_mapping(engine), (_example(m, ctx),)
        )
    qat = ECGClassifier(m.adapter, prepared, m.info)
    with _quiet():
        result = fit(
            qat, ctx.data, ctx.train_config, on_epoch_end=ctx.on_epoch_end, progress=ctx.progress
        )
        prepared = qat.backbone.cpu().eval()
        qbackbone = convert_fx(prepared)
    q = ECGClassifier(qat.adapter.cpu(), qbackbone, m.info).eval()
    return traced_variant(
        q,
        ctx,
        model,
        params={
            "api": "torch.ao FX (prepare_qat_fx/convert_fx)",
            "qconfig": f"default {engine} QAT",
            "engine": engine,
            "finetune_epochs": ctx.train_config.max_epochs,
            "finetune_lr": ctx.train_config.lr,
            "finetune_best_epoch": result.best_epoch,
            "adapter": "float, in front of the int8 backbone",
        },
        notes=[FLOAT_ADAPTER_NOTE],
    )
