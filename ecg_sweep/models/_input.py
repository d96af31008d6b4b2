"""Input representations: how a (B, 12, T) ECG becomes what a timm backbone eats.

The adapter is the first module of every model, so the saved/exported model takes raw
millivolts and applies the train-fit standardization and the representation itself: prediction,
ONNX export and the MLflow signature all see the same (B, 12, T) float32 input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ecg_sweep.errors import ConfigError
from ecg_sweep.models.space import Categorical, Dim

__all__ = [
    "InputSpec",
    "InputAdapter",
    "REPRESENTATIONS",
    "check_repr",
    "image_dims",
    "nearest_multiple",
]

# image: the reference configuration's (the original course project's): the 12 x T matrix
#        resized to H x W and copied to 3 channels.
# signal: ECG-native. Transformers see 1 x 12 x T with lead-by-time patches. CNNs see the leads
#         as channels over time, 12 x 1 x T, with their convolutions made time-only (a 1-D CNN
#         with the family's blocks), or -- the cheaper "fold" layout -- time folded into an
#         H x W raster that survives 32x downsampling.
REPRESENTATIONS = ("signal", "image")
# How the adapter lays the (B, 12, T) signal out for the backbone.
LAYOUTS = ("image", "leads_rows", "leads_channels", "fold")


@dataclass(frozen=True)
class InputSpec:
    repr: str  # "image" | "signal"
    channels: int  # in_chans of the backbone
    height: int
    width: int
    layout: str = "leads_rows"  # one of LAYOUTS

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def check_repr(params: Mapping[str, Any]) -> None:
    if params["input_repr"] not in REPRESENTATIONS:
        raise ConfigError(f"input_repr must be 'signal' or 'image', not {params['input_repr']!r}")


def image_dims() -> dict[str, Dim]:
    """The image representation's size, searched by every family that offers it."""
    return {
        "image_height": Categorical((96, 128, 182)),
        "image_width": Categorical((128, 256)),
    }


def nearest_multiple(value: int, base: int) -> int:
    """Nearest positive multiple of ``base`` (182 with patch 8 -> 184, with patch 16 -> 176)."""
    return max(base, int(round(value / base)) * base)


class InputAdapter(nn.Module):
    """(B, 12, T) millivolts -> standardized -> the backbone's (B, C, H, W)."""

    def __init__(self, spec: InputSpec, mean: torch.Tensor, std: torch.Tensor, n_samples: int):
        super().__init__()
        self.spec = spec
        self.n_samples = n_samples
        # (1 or 12, 1) statistics fit on the training split; buffers travel with the state_dict.
        self.register_buffer("mean", mean.reshape(1, -1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std  # (B, 12, T)
        s = self.spec
        if s.layout == "image":
            # (B, 12, T) -> (B, 1, 12, T) -> bilinear resize to (B, 1, H, W) -> 3 channels
            img = F.interpolate(
                x.unsqueeze(1), size=(s.height, s.width), mode="bilinear", align_corners=False
            )
            return img.expand(-1, s.channels, -1, -1).contiguous()
        if s.layout == "leads_channels":
            return x.unsqueeze(2)  # (B, 12, T) -> (B, 12, 1, T): leads as channels, time as width
        if s.layout == "fold":
            # (B, 12, T) -> resample time to H*W -> (B, 12, H, W), row-major raster of time
            n = s.height * s.width
            if n != x.shape[-1]:
                x = F.interpolate(x, size=n, mode="linear", align_corners=False)
            return x.reshape(x.shape[0], x.shape[1], s.height, s.width)
        # (B, 12, T) -> (B, 1, 12, T) for the 2-D lead-by-time patch embedding
        return x.unsqueeze(1)
