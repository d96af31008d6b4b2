"""Shared shape of the CNN families (efficientnetv2, convnext): input geometry, space,
validation, the 1-D conversion and one ``register_cnn`` for both."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._input import InputSpec, check_repr, image_dims
from ecg_sweep.models._registry import ModelSpec, SpaceContext, register_model
from ecg_sweep.models.space import (
    AUGMENT_CONDITIONS,
    IMAGE_ONLY,
    SIGNAL_ONLY,
    TRAIN_DIMS,
    Categorical,
    Condition,
    Dim,
    Float,
    SearchSpace,
    TrialLike,
    sample_space,
)

__all__ = [
    "CNN_CONDITIONS",
    "CNN_INPUT_DEFAULTS",
    "cnn_input_dims",
    "cnn_input_spec",
    "cnn_regularization_dims",
    "common_kwargs",
    "finish_cnn",
    "parse_depths",
    "register_cnn",
    "to_1d",
    "validate_cnn",
]

# Defaults shared by both CNN families: the ECG-native 1-D input and the reference image.
CNN_INPUT_DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
    "signal_layout": "1d",
    "signal_height": 32,
    "signal_width": 32,
    "image_height": 182,
    "image_width": 256,
}

FOLD_ONLY: Condition = lambda p: SIGNAL_ONLY(p) and p.get("signal_layout") == "fold"  # noqa: E731

CNN_CONDITIONS = {
    **AUGMENT_CONDITIONS,
    "signal_layout": SIGNAL_ONLY,
    "signal_height": FOLD_ONLY,
    "signal_width": FOLD_ONLY,
    "image_height": IMAGE_ONLY,
    "image_width": IMAGE_ONLY,
}


def cnn_input_dims(ctx: SpaceContext) -> dict[str, Dim]:
    return {
        "input_repr": Categorical(("signal", "image")),
        "signal_layout": Categorical(("1d", "fold")),
        "signal_height": Categorical((32, 64)),
        "signal_width": Categorical((32, 64)),
        **image_dims(),
    }


def cnn_regularization_dims() -> dict[str, Dim]:
    return {"dropout": Float(0.0, 0.5), "drop_path": Float(0.0, 0.3), **TRAIN_DIMS}


def cnn_input_spec(params: Mapping[str, Any], ctx: SpaceContext) -> InputSpec:
    check_repr(params)
    if params["input_repr"] == "image":
        return InputSpec("image", 3, params["image_height"], params["image_width"], layout="image")
    if params["signal_layout"] == "1d":
        return InputSpec("signal", ctx.n_leads, 1, ctx.n_samples, layout="leads_channels")
    return InputSpec(
        "signal", ctx.n_leads, params["signal_height"], params["signal_width"], layout="fold"
    )


def validate_cnn(params: Mapping[str, Any], ctx: SpaceContext, min_side: int = 32) -> None:
    if params.get("input_repr") == "signal" and params.get("signal_layout") not in ("1d", "fold"):
        raise ConfigError(
            f"signal_layout must be '1d' or 'fold', not {params.get('signal_layout')!r}"
        )
    spec = cnn_input_spec(params, ctx)
    if spec.layout == "leads_channels":
        if spec.width < min_side:
            raise ConfigError(
                f"records of {spec.width} samples are too short for a 32x-downsampling CNN"
            )
        return
    if min(spec.height, spec.width) < min_side:
        raise ConfigError(
            f"input {spec.height}x{spec.width} is too small for a 32x-downsampling CNN; "
            f"use at least {min_side} on each side"
        )


def parse_depths(value: str | tuple | list, n: int = 4) -> tuple[int, ...]:
    """'3-3-9-3' | (3, 3, 9, 3) -> (3, 3, 9, 3)."""
    parts = value.split("-") if isinstance(value, str) else list(value)
    depths = tuple(int(p) for p in parts)
    if len(depths) != n or min(depths) < 1:
        raise ValueError(f"depths must be {n} positive integers, got {value!r}")
    return depths


def common_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"drop_rate": params["dropout"], "drop_path_rate": params["drop_path"]}


def to_1d(model: nn.Module) -> nn.Module:
    """Turn a timm 2-D CNN into the same architecture over time only, in place.

    Every Conv2d with kernel (kh, kw) becomes (1, kw) with stride (1, sw) and padding (0, pw);
    its weight keeps the centre row of the initialization. The input is then (B, 12, 1, T):
    leads as channels, time as width -- a 1-D CNN like the benchmark's best (resnet1d,
    xresnet1d) with the family's blocks, widths and depths, at the cost of about one image row.
    """
    for mod in model.modules():
        if not isinstance(mod, nn.Conv2d):
            continue
        if mod.kernel_size[0] != 1 or mod.stride[0] != 1 or mod.padding[0] != 0:
            kh = mod.kernel_size[0]
            with torch.no_grad():
                mod.weight = nn.Parameter(mod.weight[:, :, kh // 2 : kh // 2 + 1, :].clone())
            mod.kernel_size = (1, mod.kernel_size[1])
            mod.stride = (1, mod.stride[1])
            if isinstance(mod.padding, tuple):
                mod.padding = (0, mod.padding[1])
            mod.dilation = (1, mod.dilation[1])
    return model


def finish_cnn(model: nn.Module, input_spec: InputSpec) -> nn.Module:
    """Apply what the input layout needs (time-only convolutions for leads-as-channels)."""
    return to_1d(model) if input_spec.layout == "leads_channels" else model


def register_cnn(
    name: str,
    description: str,
    build: Callable[..., nn.Module],
    search_space: Callable[[SpaceContext], dict[str, Dim]],
    defaults: dict[str, Any],
    train_defaults: dict[str, Any],
    tiny: dict[str, Any],
) -> ModelSpec:
    """Register a CNN family: the shared CNN input geometry, conditions and validation."""

    def suggest(trial: TrialLike, space: SearchSpace, ctx: SpaceContext) -> dict[str, Any]:
        return sample_space(trial, space, defaults, CNN_CONDITIONS)

    return register_model(
        ModelSpec(
            name=name,
            description=description,
            build=build,
            suggest=suggest,
            input_spec=cnn_input_spec,
            search_space=search_space,
            defaults=defaults,
            train_defaults=train_defaults,
            presets={"tiny": tiny},
            conditions=CNN_CONDITIONS,
            validate=validate_cnn,
        )
    )
