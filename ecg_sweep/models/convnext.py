"""ConvNeXt (timm), stage depths, width and kernel searchable.

Reference configuration (the original course project's): ConvNeXt-T, stages [3, 3, 9, 3],
96 channels, 7x7 depthwise, dropout 0.2, AdamW lr 4e-3, weight decay 0.05. The reference
ConvNeXt learned nothing (it matched "NORM for everyone"); the shared engine's warm-up + cosine
schedule and the ECG-native input fix that, and a test keeps it fixed.
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
    parse_depths,
    register_cnn,
)
from ecg_sweep.models._input import InputSpec
from ecg_sweep.models._registry import SpaceContext
from ecg_sweep.models.space import Categorical, Dim

DEFAULTS: dict[str, Any] = {
    **CNN_INPUT_DEFAULTS,
    "depths": "3-3-9-3",
    "width": 96,
    "kernel_size": 7,
    "dropout": 0.2,
    "drop_path": 0.1,
}
TRAIN_DEFAULTS = {"optimizer": "adamw", "lr": 4e-3, "weight_decay": 0.05}
TINY = {"depths": "1-1-1-1", "width": 16, "drop_path": 0.0}


def search_space(ctx: SpaceContext) -> dict[str, Dim]:
    return {
        **cnn_input_dims(ctx),
        "depths": Categorical(("2-2-6-2", "3-3-9-3", "3-3-27-3")),
        "width": Categorical((48, 64, 96)),
        "kernel_size": Categorical((3, 5, 7)),
        **cnn_regularization_dims(),
    }


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    w = int(params["width"])
    model = timm.create_model(
        "convnext_tiny",
        pretrained=False,
        num_classes=num_classes,
        in_chans=input_spec.channels,
        depths=parse_depths(params["depths"]),
        dims=(w, 2 * w, 4 * w, 8 * w),
        kernel_sizes=int(params["kernel_size"]),
        **common_kwargs(params),
    )
    return finish_cnn(model, input_spec)


SPEC = register_cnn(
    "convnext",
    "ConvNeXt (timm), stage depths / width / kernel",
    build,
    search_space,
    DEFAULTS,
    TRAIN_DEFAULTS,
    TINY,
)
