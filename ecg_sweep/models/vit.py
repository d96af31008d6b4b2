"""ViT: timm VisionTransformer with mean-pooled head.

Reference configuration (the original course project's settings): patch 8x8 on the 184 x 256
image, embed 256, depth 6, 4 heads, MLP ratio 4, dropout 0.1. ECG-native default: 1 x 12 x T input, 12 x 20 lead-by-time patches (one token per
200 ms at 100 Hz across all leads).
"""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ecg_sweep.models._input import InputSpec
from ecg_sweep.models._registry import ModelSpec, SpaceContext, register_model
from ecg_sweep.models._transformer import (
    TRANSFORMER_CONDITIONS,
    transformer_input_spec,
    transformer_kwargs,
    transformer_patch,
    transformer_space,
    validate_transformer,
    validate_transformer_space,
)
from ecg_sweep.models.space import SearchSpace, TrialLike, sample_space

DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
    "patch_embed": "linear",
    "patch_time": 20,
    "patch_leads": 12,
    "patch_size": 8,
    "image_height": 182,
    "image_width": 256,
    "embed_dim": 256,
    "depth": 6,
    "num_heads": 4,
    "mlp_ratio": 4.0,
    "dropout": 0.1,
    "drop_path": 0.0,
}
TRAIN_DEFAULTS = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.05}
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "patch_time": 20}


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    """timm VisionTransformer, no class token, mean-pooled (the reference configuration's head)."""
    patch = transformer_patch(params, ctx)
    return VisionTransformer(
        num_classes=num_classes,
        global_pool="avg",
        class_token=False,
        **transformer_kwargs(input_spec, params, patch),
    )


def suggest(trial: TrialLike, space: SearchSpace, ctx: SpaceContext) -> dict[str, Any]:
    return sample_space(trial, space, DEFAULTS, TRANSFORMER_CONDITIONS)


SPEC = register_model(
    ModelSpec(
        name="vit",
        description="Vision Transformer (timm), mean-pooled head",
        build=build,
        suggest=suggest,
        input_spec=transformer_input_spec,
        search_space=transformer_space,
        defaults=DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        presets={"tiny": TINY},
        conditions=TRANSFORMER_CONDITIONS,
        validate=validate_transformer,
        validate_space=validate_transformer_space,
    )
)
