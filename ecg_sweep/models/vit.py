"""ViT: timm VisionTransformer with mean-pooled head.

Seed configuration: patch 8x8 on the 184 x 256 image, embed 256, depth 6, 4 heads, MLP ratio 4,
dropout 0.1. ECG-native default: 1 x 12 x T input, 12 x 20 lead-by-time patches (one token per
200 ms at 100 Hz across all leads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ecg_sweep.models._common import (
    IMAGE_ONLY,
    SIGNAL_ONLY,
    TRAIN_DIMS,
    image_dims,
    sample_space,
    time_divisors,
    transformer_input_spec,
    transformer_patch,
    validate_transformer,
    validate_transformer_space,
)
from ecg_sweep.models._input import InputSpec
from ecg_sweep.models._registry import ModelSpec, SpaceContext, register_model
from ecg_sweep.models._space import Categorical, Dim, Float, Int, SearchSpace, TrialLike

DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
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

# Geometry and representation params are conditional on the representation.
CONDITIONS = {
    "patch_time": SIGNAL_ONLY,
    "patch_leads": SIGNAL_ONLY,
    "patch_size": IMAGE_ONLY,
    "image_height": IMAGE_ONLY,
    "image_width": IMAGE_ONLY,
}


def transformer_space(ctx: SpaceContext) -> dict[str, Dim]:
    """vit/deit default space. embed_dim choices are multiples of 24 so every head count divides."""
    return {
        "input_repr": Categorical(("signal", "image")),
        "patch_time": Categorical(time_divisors(ctx.n_samples)),
        "patch_leads": Categorical((12, 6)),
        "patch_size": Categorical((8, 16)),
        **image_dims(),
        "embed_dim": Categorical((96, 144, 192, 240, 288, 384)),
        "depth": Int(2, 12),
        "num_heads": Categorical((2, 3, 4, 6, 8)),
        "mlp_ratio": Categorical((2.0, 3.0, 4.0)),
        "dropout": Float(0.0, 0.3),
        "drop_path": Float(0.0, 0.3),
        **TRAIN_DIMS,
    }


def transformer_kwargs(spec: InputSpec, params: Mapping[str, Any], patch: tuple[int, int]) -> dict:
    return {
        "img_size": (spec.height, spec.width),
        "patch_size": patch,
        "in_chans": spec.channels,
        "embed_dim": params["embed_dim"],
        "depth": params["depth"],
        "num_heads": params["num_heads"],
        "mlp_ratio": params["mlp_ratio"],
        "drop_rate": params["dropout"],
        "pos_drop_rate": params["dropout"],
        "proj_drop_rate": params["dropout"],
        "drop_path_rate": params["drop_path"],
    }


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    """timm VisionTransformer, no class token, mean-pooled (the seed's head)."""
    patch = transformer_patch(params, ctx)
    return VisionTransformer(
        num_classes=num_classes,
        global_pool="avg",
        class_token=False,
        **transformer_kwargs(input_spec, params, patch),
    )


def suggest(trial: TrialLike, space: SearchSpace, ctx: SpaceContext) -> dict[str, Any]:
    return sample_space(trial, space, DEFAULTS, CONDITIONS)


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
        conditions=CONDITIONS,
        validate=validate_transformer,
        validate_space=validate_transformer_space,
    )
)
