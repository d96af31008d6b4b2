"""Shared shape of the transformer families (vit, deit): input geometry, space, validation.

Signal input: 1 x 12 x T with lead-by-time patches (12 x 20 = one token per 200 ms at 100 Hz
across all leads). Image input: the reference configuration's H x W raster with square patches.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

from timm.layers import PatchEmbed
from torch import nn

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._input import InputSpec, check_repr, image_dims, nearest_multiple
from ecg_sweep.models._registry import SpaceContext
from ecg_sweep.models.space import (
    AUGMENT_CONDITIONS,
    IMAGE_ONLY,
    SIGNAL_ONLY,
    TRAIN_DIMS,
    Categorical,
    Dim,
    Float,
    Int,
    SearchSpace,
)

__all__ = [
    "PATCH_EMBEDS",
    "TRANSFORMER_CONDITIONS",
    "time_divisors",
    "transformer_input_spec",
    "transformer_kwargs",
    "transformer_patch",
    "transformer_space",
    "validate_transformer",
    "validate_transformer_space",
]

# Geometry and representation params are conditional on the representation.
TRANSFORMER_CONDITIONS = {
    **AUGMENT_CONDITIONS,
    "patch_time": SIGNAL_ONLY,
    "patch_leads": SIGNAL_ONLY,
    "patch_size": IMAGE_ONLY,
    "image_height": IMAGE_ONLY,
    "image_width": IMAGE_ONLY,
}


# How tokens are made: "linear" = timm's patch embedding (one linear map per patch, a conv with
# kernel = stride = patch); "conv" = a convolutional stem first (Xiao et al. 2021, "Early
# Convolutions Help Transformers See Better"): two conv-BN-ReLU layers at full resolution, time-
# only (1 x 7) on the signal input and 3 x 3 on the image, then the patchifying conv.
PATCH_EMBEDS = ("linear", "conv")


class ConvStemPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with a convolutional stem in front of its patchifying ``proj``.

    (B, C, H, W) -> conv k, BN, ReLU -> conv k, BN, ReLU: (B, c, H, W) -> proj: (B, D, H/ph, W/pw);
    c = max(8, D // 16) channels. Same token grid, same interface (timm ``embed_layer``).
    """

    def __init__(self, *args: Any, stem_kernel: tuple[int, int] = (1, 7), **kwargs: Any):
        super().__init__(*args, **kwargs)
        cin, dim = self.proj.in_channels, self.proj.out_channels
        c = max(8, dim // 16)  # few channels: proj (c x D x patch) dominates the cost
        pad = (stem_kernel[0] // 2, stem_kernel[1] // 2)
        self.proj = nn.Sequential(
            nn.Conv2d(cin, c, stem_kernel, padding=pad, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, stem_kernel, padding=pad, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, dim, self.patch_size, stride=self.patch_size),
        )


def time_divisors(n_samples: int) -> tuple[int, ...]:
    """Patch lengths that divide the record: between 1/100 and 1/20 of it (10-50 at 100 Hz)."""
    lo, hi = max(2, n_samples // 100), max(2, n_samples // 20)
    return tuple(d for d in range(lo, hi + 1) if n_samples % d == 0)


def transformer_space(ctx: SpaceContext) -> dict[str, Dim]:
    """vit/deit default space. embed_dim choices are multiples of 24 so every head count divides."""
    return {
        "input_repr": Categorical(("signal", "image")),
        "patch_time": Categorical(time_divisors(ctx.n_samples)),
        "patch_leads": Categorical((12, 6)),
        "patch_size": Categorical((8, 16)),
        **image_dims(),
        "patch_embed": Categorical(PATCH_EMBEDS),
        "embed_dim": Categorical((96, 144, 192, 240, 288, 384)),
        "depth": Int(2, 12),
        "num_heads": Categorical((2, 3, 4, 6, 8)),
        "mlp_ratio": Categorical((2.0, 3.0, 4.0)),
        "dropout": Float(0.0, 0.3),
        "drop_path": Float(0.0, 0.3),
        **TRAIN_DIMS,
    }


def transformer_input_spec(params: Mapping[str, Any], ctx: SpaceContext) -> InputSpec:
    if params["input_repr"] == "image":
        p = params["patch_size"]
        h = nearest_multiple(params["image_height"], p)
        w = nearest_multiple(params["image_width"], p)
        return InputSpec("image", 3, h, w, layout="image")
    check_repr(params)
    return InputSpec("signal", 1, ctx.n_leads, ctx.n_samples, layout="leads_rows")


def transformer_patch(params: Mapping[str, Any], ctx: SpaceContext) -> tuple[int, int]:
    if params["input_repr"] == "image":
        return (params["patch_size"], params["patch_size"])
    return (params["patch_leads"], params["patch_time"])


def transformer_kwargs(spec: InputSpec, params: Mapping[str, Any], patch: tuple[int, int]) -> dict:
    """timm VisionTransformer kwargs; one parameter name from search space to factory."""
    if params["patch_embed"] not in PATCH_EMBEDS:
        raise ConfigError(
            f"patch_embed must be one of {', '.join(PATCH_EMBEDS)}, not {params['patch_embed']!r}"
        )
    embed: dict[str, Any] = {}
    if params["patch_embed"] == "conv":
        kernel = (3, 3) if spec.layout == "image" else (1, 7)
        embed["embed_layer"] = functools.partial(ConvStemPatchEmbed, stem_kernel=kernel)
    return {
        **embed,
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


def validate_transformer(params: Mapping[str, Any], ctx: SpaceContext) -> None:
    check_repr(params)
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
