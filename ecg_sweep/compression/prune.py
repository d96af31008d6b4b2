"""Pruning methods: the reference configuration's unstructured L1 masks (an honest ablation) and structured pruning.

``torch.nn.utils.prune`` only zeroes weights: the tensors keep their shape, so the shipped file
and the dense kernels that run it are unchanged (measured: no size or latency gain). Structured
pruning with torch-pruning physically removes channels, MLP units and attention head dims, so
the model is smaller and faster before any quantization; it is then fine-tuned with ``fit()``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import torch
from torch import nn
from torch.nn.utils import prune as nn_prune

from ecg_sweep.compression.baseline import torch_variant
from ecg_sweep.compression.measure import count_weights
from ecg_sweep.compression.methods import BuildContext, Variant, float_copy, register_method
from ecg_sweep.engine import fit
from ecg_sweep.models import ECGClassifier

__all__ = ["prune_l1_unstructured", "prune_structured", "structured_prune"]

log = logging.getLogger(__name__)


@register_method(
    "prune_l1_unstructured",
    "reference ablation: torch.nn.utils.prune L1 masks on conv/linear weights, made permanent",
)
def prune_l1_unstructured(model: ECGClassifier, ctx: BuildContext) -> Variant:
    amount = ctx.config.prune_amount
    m = float_copy(model)
    layers = [mod for mod in m.backbone.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    for mod in layers:
        nn_prune.l1_unstructured(mod, "weight", amount=amount)
        nn_prune.remove(mod, "weight")  # permanent: the zeros are baked into dense tensors
    return torch_variant(
        m,
        ctx,
        m,
        params={"amount": amount, "scope": "per layer", "layers": len(layers), "finetune": "none"},
        notes=["zeros stay in dense tensors: no size or latency change is expected"],
    )


def _ignored_layers(model: ECGClassifier) -> list[nn.Module]:
    """The classifier layers (their outputs are the classes) and the input adapter.

    timm's ``get_classifier()`` names exactly the output layers: ``head`` (ViT), ``head`` and
    ``head_dist`` (DeiT), ``head.fc`` (ConvNeXt: its ``head.norm`` stays prunable with the last
    stage), ``classifier`` (EfficientNetV2).
    """
    heads = model.backbone.get_classifier()
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)
    return [model.adapter, *(h for h in heads if isinstance(h, nn.Module))]


def structured_prune(model: ECGClassifier, ratio: float, example: torch.Tensor) -> dict[str, int]:
    """Remove ``ratio`` of the channels of every prunable group of ``model`` in place.

    Groups are ranked by L2 magnitude (torch-pruning ``GroupMagnitudeImportance``). For timm
    attention blocks the head count is kept and head dims shrink; ``num_heads``, ``head_dim``
    and ``attn_dim`` are then reset so the reshapes in ``Attention.forward`` match the new
    ``qkv`` width. Returns the per-attention head geometry after pruning (for the params).
    """
    import torch_pruning as tp
    from timm.layers import Attention

    attns = [m for m in model.modules() if isinstance(m, Attention)]
    heads = {a.qkv: a.num_heads for a in attns}
    with warnings.catch_warnings():
        # pos_embed / cls_token / layer-scale gammas: torch-pruning prunes their last
        # non-singleton dim, which is the embedding/channel dim we want.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            ignored_layers=_ignored_layers(model),
            num_heads=heads,
            prune_head_dims=True,
            prune_num_heads=False,
            # Channel counts in multiples of 8 keep the int8/fp32 GEMM kernels on fast paths;
            # with heads the group is (heads x head_dim) and torch-pruning rounds per head.
            round_to=None if heads else 8,
        )
        pruner.step()
    for a in attns:
        a.num_heads = pruner.num_heads[a.qkv]
        a.head_dim = a.qkv.out_features // (3 * a.num_heads)
        a.attn_dim = a.num_heads * a.head_dim
    if attns:
        return {"num_heads": attns[0].num_heads, "head_dim": attns[0].head_dim}
    return {}


@register_method(
    "prune_structured",
    "torch-pruning: channels / head dims physically removed, then fine-tuned with fit()",
    loads_without_code=False,  # its layers no longer match the params in its metadata
)
def prune_structured(model: ECGClassifier, ctx: BuildContext) -> Variant:
    cfg = ctx.config
    m = float_copy(model)
    n_before = count_weights(m)[0]
    example = torch.from_numpy(ctx.data.train.x[:2]).float()
    geometry = structured_prune(m, cfg.structured_ratio, example)
    n_pruned = count_weights(m)[0]
    m.info = dataclasses.replace(
        m.info,
        extra={
            **m.info.extra,
            "structured_pruning": {"ratio": cfg.structured_ratio, **geometry},
        },
    )
    # The unpruned model teaches its pruned self while it recovers (knowledge distillation):
    # its soft outputs carry more than the labels of a few fine-tuning epochs.
    teacher = float_copy(model).eval() if cfg.finetune_distill else None
    result = fit(
        m,
        ctx.data,
        ctx.train_config,
        teacher=teacher,
        on_epoch_end=ctx.on_epoch_end,
        progress=ctx.progress,
    )
    m = m.cpu().eval()
    return torch_variant(
        m,
        ctx,
        m,
        params={
            "ratio": cfg.structured_ratio,
            "importance": "group L2 magnitude",
            "params_before": n_before,
            "params_after": n_pruned,
            **{f"pruned_{k}": v for k, v in geometry.items()},
            "finetune_epochs": ctx.train_config.max_epochs,
            "finetune_lr": ctx.train_config.lr,
            "finetune_best_epoch": result.best_epoch,
            "finetune_teacher": "fp32 (unpruned)" if teacher is not None else "none",
            "finetune_distill_alpha": ctx.train_config.distill_alpha,
            "finetune_distill_temperature": ctx.train_config.distill_temperature,
        },
        notes=["the pruned model is shipped pickled: its ModelInfo params no longer rebuild it"],
    )
