"""Pieces shared by the families: training dims, representation dims and sampling."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._input import InputSpec, nearest_multiple
from ecg_sweep.models._registry import SpaceContext
from ecg_sweep.models._space import Categorical, Dim, Float, SearchSpace, TrialLike

# Names of the parameters that configure training rather than the network (TrainConfig fields).
TRAIN_DIMS: dict[str, Dim] = {
    "lr": Float(1e-4, 5e-3, log=True),
    "weight_decay": Float(1e-4, 0.1, log=True),
    "batch_size": Categorical((32, 64, 128)),
}

# A parameter is active when its condition on the already-sampled params holds.
Condition = Callable[[Mapping[str, Any]], bool]
IMAGE_ONLY: Condition = lambda p: p.get("input_repr") == "image"  # noqa: E731
SIGNAL_ONLY: Condition = lambda p: p.get("input_repr", "signal") == "signal"  # noqa: E731


def sample_space(
    trial: TrialLike,
    space: SearchSpace,
    defaults: Mapping[str, Any],
    conditions: Mapping[str, Condition],
) -> dict[str, Any]:
    """Sample every active dim of ``space`` in order and return only the sampled values.

    Conditions see the defaults overlaid with what was sampled so far, so order matters:
    ``input_repr`` is sampled before the geometry that depends on it.
    """
    seen = dict(defaults)
    sampled: dict[str, Any] = {}
    for name, dim in space.items():
        cond = conditions.get(name)
        if cond is None or cond(seen):
            sampled[name] = seen[name] = dim.sample(trial, name)
    return sampled


def time_divisors(n_samples: int) -> tuple[int, ...]:
    """Patch lengths that divide the record: between 1/100 and 1/20 of it (10-50 at 100 Hz)."""
    lo, hi = max(2, n_samples // 100), max(2, n_samples // 20)
    return tuple(d for d in range(lo, hi + 1) if n_samples % d == 0)


def image_dims() -> dict[str, Dim]:
    return {
        "image_height": Categorical((96, 128, 182)),
        "image_width": Categorical((128, 256)),
    }


def transformer_input_spec(params: Mapping[str, Any], ctx: SpaceContext) -> InputSpec:
    if params["input_repr"] == "image":
        p = params["patch_size"]
        h = nearest_multiple(params["image_height"], p)
        w = nearest_multiple(params["image_width"], p)
        return InputSpec("image", 3, h, w, layout="image")
    _check_repr(params)
    return InputSpec("signal", 1, ctx.n_leads, ctx.n_samples, layout="leads_rows")


def transformer_patch(params: Mapping[str, Any], ctx: SpaceContext) -> tuple[int, int]:
    if params["input_repr"] == "image":
        return (params["patch_size"], params["patch_size"])
    return (params["patch_leads"], params["patch_time"])


def validate_transformer(params: Mapping[str, Any], ctx: SpaceContext) -> None:
    _check_repr(params)
    if params["embed_dim"] % params["num_heads"]:
        raise ConfigError(
            f"num_heads {params['num_heads']} must divide embed_dim {params['embed_dim']}"
        )
    if params["input_repr"] == "signal":
        if ctx.n_samples % params["patch_time"]:
            raise ConfigError(
                f"patch_time {params['patch_time']} must divide the record length "
                f"{ctx.n_samples}; valid: {', '.join(map(str, time_divisors(ctx.n_samples)))}"
            )
        if ctx.n_leads % params["patch_leads"]:
            raise ConfigError(
                f"patch_leads {params['patch_leads']} must divide the lead count {ctx.n_leads}"
            )


def validate_transformer_space(space: SearchSpace, ctx: SpaceContext) -> None:
    """Reject a space in which some sampled combination could never be built."""
    emb, heads = space.get("embed_dim"), space.get("num_heads")
    if emb is not None and heads is not None and emb.values() and heads.values():
        for e, h in itertools.product(emb.values(), heads.values()):
            if e % h:
                raise ConfigError(
                    f"search space keys 'embed_dim' and 'num_heads': {h} heads do not divide "
                    f"embed_dim {e}; use embed_dim multiples of every num_heads choice"
                )
    pt = space.get("patch_time")
    if pt is not None and pt.values():
        bad = [v for v in pt.values() if ctx.n_samples % v]
        if bad:
            raise ConfigError(
                f"search space key 'patch_time': {', '.join(map(str, bad))} do(es) not divide the "
                f"record length {ctx.n_samples}; valid: "
                f"{', '.join(map(str, time_divisors(ctx.n_samples)))}"
            )


def cnn_input_spec(params: Mapping[str, Any], ctx: SpaceContext) -> InputSpec:
    _check_repr(params)
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


def _check_repr(params: Mapping[str, Any]) -> None:
    if params["input_repr"] not in ("signal", "image"):
        raise ConfigError(f"input_repr must be 'signal' or 'image', not {params['input_repr']!r}")
