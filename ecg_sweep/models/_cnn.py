"""Shared shape of the CNN families (efficientnetv2, convnext)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ecg_sweep.models._common import IMAGE_ONLY, SIGNAL_ONLY, TRAIN_DIMS, image_dims
from ecg_sweep.models._registry import SpaceContext
from ecg_sweep.models._space import Categorical, Dim, Float

# Defaults shared by both CNN families: the ECG-native folded input and the seed's image.
CNN_INPUT_DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
    "signal_height": 32,
    "signal_width": 32,
    "image_height": 182,
    "image_width": 256,
}

CNN_CONDITIONS = {
    "signal_height": SIGNAL_ONLY,
    "signal_width": SIGNAL_ONLY,
    "image_height": IMAGE_ONLY,
    "image_width": IMAGE_ONLY,
}


def cnn_input_dims(ctx: SpaceContext) -> dict[str, Dim]:
    return {
        "input_repr": Categorical(("signal", "image")),
        "signal_height": Categorical((32, 64)),
        "signal_width": Categorical((32, 64)),
        **image_dims(),
    }


def cnn_regularization_dims() -> dict[str, Dim]:
    return {"dropout": Float(0.0, 0.5), "drop_path": Float(0.0, 0.3), **TRAIN_DIMS}


def parse_depths(value: str | tuple | list, n: int = 4) -> tuple[int, ...]:
    """'3-3-9-3' | (3, 3, 9, 3) -> (3, 3, 9, 3)."""
    parts = value.split("-") if isinstance(value, str) else list(value)
    depths = tuple(int(p) for p in parts)
    if len(depths) != n or min(depths) < 1:
        raise ValueError(f"depths must be {n} positive integers, got {value!r}")
    return depths


def common_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"drop_rate": params["dropout"], "drop_path_rate": params["drop_path"]}
