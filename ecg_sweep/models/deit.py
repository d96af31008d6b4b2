"""DeiT: timm VisionTransformerDistilled (class token + distillation token, two heads).

Reference configuration (the original course project's): DeiT-tiny distilled, patch 16,
embed 192, depth 12, 3 heads, dropout 0.2. In training the backbone returns (class logits, distillation logits); in eval their mean.
``distill_alpha`` and ``distill_temperature`` are TrainConfig fields, searched only when a
teacher is given.
"""

from __future__ import annotations

from typing import Any

from timm.models.deit import VisionTransformerDistilled
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
from ecg_sweep.models.space import Dim, Float, SearchSpace, TrialLike, sample_space

DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
    "patch_embed": "linear",
    "patch_time": 20,
    "patch_leads": 12,
    "patch_size": 16,
    "image_height": 182,
    "image_width": 256,
    "embed_dim": 192,
    "depth": 12,
    "num_heads": 3,
    "mlp_ratio": 4.0,
    "dropout": 0.2,
    "drop_path": 0.1,
}
TRAIN_DEFAULTS = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.05}
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "patch_time": 20}
DISTILL_DIMS = {"distill_alpha": Float(0.1, 0.9), "distill_temperature": Float(1.0, 8.0, log=True)}


def search_space(ctx: SpaceContext) -> dict[str, Dim]:
    space = transformer_space(ctx)
    if ctx.has_teacher:
        space.update(DISTILL_DIMS)
    return space


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    patch = transformer_patch(params, ctx)
    return VisionTransformerDistilled(
        num_classes=num_classes, **transformer_kwargs(input_spec, params, patch)
    )


def suggest(trial: TrialLike, space: SearchSpace, ctx: SpaceContext) -> dict[str, Any]:
    params = sample_space(trial, space, DEFAULTS, TRANSFORMER_CONDITIONS)
    if not ctx.has_teacher:
        # Without a teacher the distillation knobs mean nothing: never sample or log them.
        params.pop("distill_alpha", None)
        params.pop("distill_temperature", None)
    return params


SPEC = register_model(
    ModelSpec(
        name="deit",
        description="DeiT (timm), distillation token + head; teacher optional",
        build=build,
        suggest=suggest,
        input_spec=transformer_input_spec,
        search_space=search_space,
        defaults=DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        presets={"tiny": TINY},
        conditions=TRANSFORMER_CONDITIONS,
        validate=validate_transformer,
        validate_space=validate_transformer_space,
        distilled=True,
    )
)
