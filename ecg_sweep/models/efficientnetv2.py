"""EfficientNetV2 (timm ``efficientnetv2_s`` and relatives), width/depth multipliers searchable.

Reference configuration (the original course project's): EfficientNetV2-S, stochastic depth
0.2, dropout 0.2, Adam lr 1e-3. We build timm's PyTorch-padding variant (``efficientnetv2_s``),
the same architecture as ``tf_efficientnetv2_s`` minus TF "same" padding, which breaks FX
quantization and costs an extra pad op on export.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from ecg_sweep.models._cnn import (
    CNN_INPUT_DEFAULTS,
    cnn_input_dims,
    cnn_regularization_dims,
    common_kwargs,
    finish_cnn,
    register_cnn,
)
from ecg_sweep.models._input import InputSpec
from ecg_sweep.models._registry import SpaceContext
from ecg_sweep.models.space import Categorical, Dim

VARIANTS = ("efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_rw_t", "efficientnetv2_rw_s")

_MULTIPLIED = {"efficientnetv2_rw_t": ("efficientnetv2_s", 0.8, 0.9)}
DEFAULTS: dict[str, Any] = {
    **CNN_INPUT_DEFAULTS,
    "variant": "efficientnetv2_s",
    "width_mult": 1.0,
    "depth_mult": 1.0,
    "dropout": 0.2,
    "drop_path": 0.2,
}
TRAIN_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
TINY = {"width_mult": 0.25, "depth_mult": 0.25, "drop_path": 0.0}


def search_space(ctx: SpaceContext) -> dict[str, Dim]:
    return {
        **cnn_input_dims(ctx),
        "variant": Categorical(("efficientnetv2_s", "efficientnetv2_rw_t")),
        "width_mult": Categorical((0.5, 0.75, 1.0)),
        "depth_mult": Categorical((0.5, 0.75, 1.0)),
        **cnn_regularization_dims(),
    }


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    if params["variant"] not in VARIANTS:
        from ecg_sweep.errors import ConfigError

        raise ConfigError(f"variant {params['variant']!r} unknown; valid: {', '.join(VARIANTS)}")
    # timm's rw_t fixes its own multipliers (it is efficientnetv2_s at 0.8 width, 0.9 depth) and
    # refuses ours: build the same architecture with the multipliers composed.
    base, width, depth = _MULTIPLIED.get(params["variant"], (params["variant"], 1.0, 1.0))
    model = timm.create_model(
        base,
        pretrained=False,
        num_classes=num_classes,
        in_chans=input_spec.channels,
        channel_multiplier=width * params["width_mult"],
        depth_multiplier=depth * params["depth_mult"],
        **common_kwargs(params),
    )
    return finish_cnn(model, input_spec)


SPEC = register_cnn(
    "efficientnetv2",
    "EfficientNetV2 (timm), width/depth multipliers",
    build,
    search_space,
    DEFAULTS,
    TRAIN_DEFAULTS,
    TINY,
)
