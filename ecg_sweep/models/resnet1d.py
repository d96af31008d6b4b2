"""resnet1d: the PTB-XL benchmark's 1-D ResNets, resnet1d_wang and xresnet1d.

Provenance: Strodthoff, Wagner, Schaeffter and Samek (2021), "Deep Learning for ECG Analysis:
Benchmarks and Insights from PTB-XL", IEEE JBHI, code at github.com/helme/ecg_ptbxl_benchmarking
(``code/models/resnet1d.py``, ``xresnet1d.py``, ``basic_conv1d.py``). Their fold-10 macro AUROC on
the superdiagnostic task: resnet1d_wang 0.930, xresnet1d101 0.928. Rebuilt here from that layout
(not copied), without fastai:

- ``arch="wang"`` (the default): the ResNet of Wang, Yan and Oates (2017, "Time series
  classification from scratch with deep neural networks: a strong baseline") as the benchmark
  adapted it: stem conv kernel 7, stride 1, no stem pooling, 128 channels; three basic blocks
  (conv kernel 5 then conv kernel 3, each BatchNorm, ReLU after the residual sum), feature width
  fixed at 128, stride 1 in the first block and 2 in the others (1x1 conv + BN shortcut where the
  shape changes).
- ``arch="xresnet"``: fastai's xresnet ("Bag of Tricks", He et al. 2019) in 1-D: a 3-conv stem
  (w/2, w/2, w channels, kernel 5, the first with stride 2) and a max-pool; bottleneck blocks
  (``expansion`` 4; 1 = basic blocks) with kernel 5, the last BatchNorm of each block zero-
  initialized, shortcuts downsampled by average pooling then a 1x1 conv; stages of fixed width 64
  (the benchmark's ``block_szs``), so 256 channels out. Presets ``xresnet1d101`` (3-4-23-3, the
  benchmark's), ``xresnet1d50`` (3-4-6-3) and ``xresnet1d18`` (2-2-2-2, basic blocks) for CPUs.
- Both end in the benchmark's head (``create_head1d`` with ``lin_ftrs_head=[128]``): concat
  pooling (global max and global average, concatenated), then BN, dropout p/2, linear to 128,
  ReLU, BN, dropout p, linear to the classes; p = ``dropout`` (0.5 in the benchmark).
- Train defaults: the benchmark trained with AdamW-style decoupled weight decay 1e-2 and a
  one-cycle schedule peaking at lr 1e-2; the engine's warm-up + cosine is the same shape.

The convolutions are written as ``Conv2d`` with (1, k) kernels over the ``leads_channels`` layout
(B, 12, 1, T): the same arithmetic as ``Conv1d``, and the form every compression method already
handles for the other CNN families (L1 pruning of Conv2d, torch.ao FX conv-BN-ReLU fusion,
ONNX QDQ), so resnet1d is compressed and exported without special cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._cnn import parse_depths
from ecg_sweep.models._input import InputSpec
from ecg_sweep.models._registry import ModelSpec, SpaceContext, register_model
from ecg_sweep.models.space import (
    AUGMENT_CONDITIONS,
    TRAIN_DIMS,
    Categorical,
    Condition,
    Dim,
    Float,
    SearchSpace,
    TrialLike,
    sample_space,
)

ARCHS = ("wang", "xresnet")

DEFAULTS: dict[str, Any] = {
    "input_repr": "signal",
    "arch": "wang",
    "depths": "1-1-1",
    "width": 128,
    "kernel_size": 5,
    "kernel_size_stem": 7,
    "expansion": 1,
    "head_hidden": 128,
    "dropout": 0.5,
}
TRAIN_DEFAULTS = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2}
XRESNET = {"arch": "xresnet", "width": 64, "kernel_size": 5, "kernel_size_stem": 5}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"width": 16, "head_hidden": 16},
    "wang": {},
    "xresnet1d101": {**XRESNET, "depths": "3-4-23-3", "expansion": 4},
    "xresnet1d50": {**XRESNET, "depths": "3-4-6-3", "expansion": 4},
    "xresnet1d18": {**XRESNET, "depths": "2-2-2-2", "expansion": 1},
}

XRESNET_ONLY: Condition = lambda p: p.get("arch") == "xresnet"  # noqa: E731
CONDITIONS = {"expansion": XRESNET_ONLY, **AUGMENT_CONDITIONS}


def _depths(value: Any) -> tuple[int, ...]:
    parts = value.split("-") if isinstance(value, str) else list(value)
    return parse_depths(value, n=len(parts))


def _conv(ci: int, co: int, k: int, stride: int = 1) -> nn.Conv2d:
    # (B, ci, 1, T) -> (B, co, 1, T / stride): a Conv1d over time written as a (1, k) Conv2d
    return nn.Conv2d(ci, co, (1, k), stride=(1, stride), padding=(0, (k - 1) // 2), bias=False)


def _bn(c: int, zero: bool = False) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    if zero:  # xresnet: each residual branch starts as the identity
        nn.init.zeros_(bn.weight)
    return bn


class BasicBlock(nn.Module):
    """resnet1d_wang's block: conv k0 (stride) -> BN -> ReLU -> conv k1 -> BN, + shortcut, ReLU."""

    def __init__(self, ci: int, co: int, stride: int, kernels: tuple[int, int]):
        super().__init__()
        self.conv1, self.bn1 = _conv(ci, co, kernels[0], stride), _bn(co)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv(co, co, kernels[1]), _bn(co)
        self.shortcut = (
            nn.Sequential(_conv(ci, co, 1, stride), _bn(co))
            if stride != 1 or ci != co
            else nn.Identity()
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


def _conv_bn(ci: int, co: int, k: int, stride: int = 1, act: bool = True, zero: bool = False):
    layers: list[nn.Module] = [_conv(ci, co, k, stride), _bn(co, zero)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class XBlock(nn.Module):
    """xresnet's ResBlock: basic (expansion 1) or bottleneck, avg-pool-then-1x1 shortcut."""

    def __init__(self, ci: int, width: int, stride: int, kernel: int, expansion: int):
        super().__init__()
        co = width * expansion
        if expansion == 1:
            self.convs = nn.Sequential(
                _conv_bn(ci, width, kernel, stride),
                _conv_bn(width, co, kernel, act=False, zero=True),
            )
        else:
            self.convs = nn.Sequential(
                _conv_bn(ci, width, 1),
                _conv_bn(width, width, kernel, stride),
                _conv_bn(width, co, 1, act=False, zero=True),
            )
        idpath: list[nn.Module] = []
        if stride != 1:
            idpath.append(nn.AvgPool2d((1, 2), stride=(1, 2), ceil_mode=True))
        if ci != co:
            idpath.append(_conv_bn(ci, co, 1, act=False))
        self.idpath = nn.Sequential(*idpath) if idpath else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.idpath(x))


class ConcatPoolHead(nn.Module):
    """The benchmark's head: [global max ‖ global avg] -> BN, drop p/2, linear, ReLU -> BN, drop
    p, linear.

    Written without the concatenation, as the same function: BatchNorm normalizes each feature
    on its own and a linear layer on [a ‖ b] is ``W_a a + W_b b + bias``, so the max and average
    features each get their BN and their half of the first linear layer, summed. torch-pruning
    cannot follow a concat of two views of one layer (index errors in structured pruning) and
    int8 quantization would force both halves onto one scale.
    """

    def __init__(self, channels: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.bn_max, self.bn_avg = nn.BatchNorm1d(channels), nn.BatchNorm1d(channels)
        self.drop_max, self.drop_avg = nn.Dropout(dropout / 2), nn.Dropout(dropout / 2)
        self.fc_max = nn.Linear(channels, hidden)
        self.fc_avg = nn.Linear(channels, hidden, bias=False)  # one bias for the sum
        self.hidden = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(hidden), nn.Dropout(dropout))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, 1, T') -> (B, C) global max and (B, C) global average. The max is a max-pool
        # over the whole (static) length, not AdaptiveMaxPool: that exports to ReduceMax, whose
        # shape ORT's symbolic shape inference (before ONNX int8) cannot follow.
        mx = F.max_pool2d(x, kernel_size=(x.shape[2], x.shape[3])).flatten(1)
        av = self.avg_pool(x).flatten(1)
        h = self.fc_max(self.drop_max(self.bn_max(mx))) + self.fc_avg(
            self.drop_avg(self.bn_avg(av))
        )
        return self.fc(self.hidden(h))


class ResNet1d(nn.Module):
    """(B, 12, 1, T) -> (B, num_classes); ``get_classifier()`` names the output layer (timm's
    convention, used by structured pruning to keep the class count)."""

    def __init__(self, stem: nn.Sequential, stages: nn.Sequential, head: ConcatPoolHead):
        super().__init__()
        self.stem, self.stages, self.head = stem, stages, head

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _wang(in_ch: int, num_classes: int, p: Mapping[str, Any]) -> ResNet1d:
    w, depths = int(p["width"]), _depths(p["depths"])
    kernels = (int(p["kernel_size"]), 3)
    stem = nn.Sequential(_conv_bn(in_ch, w, int(p["kernel_size_stem"])))
    blocks = [
        BasicBlock(w, w, 2 if i > 0 and j == 0 else 1, kernels)
        for i, n in enumerate(depths)
        for j in range(n)
    ]
    return ResNet1d(stem, nn.Sequential(*blocks), _head(w, num_classes, p))


def _xresnet(in_ch: int, num_classes: int, p: Mapping[str, Any]) -> ResNet1d:
    w, e, depths = int(p["width"]), int(p["expansion"]), _depths(p["depths"])
    ks, k = int(p["kernel_size_stem"]), int(p["kernel_size"])
    stem = nn.Sequential(
        _conv_bn(in_ch, w // 2, ks, stride=2),
        _conv_bn(w // 2, w // 2, ks),
        _conv_bn(w // 2, w, ks),
        nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1)),
    )
    blocks, ci = [], w
    for i, n in enumerate(depths):
        for j in range(n):
            blocks.append(XBlock(ci, w, 2 if i > 0 and j == 0 else 1, k, e))
            ci = w * e
    return ResNet1d(stem, nn.Sequential(*blocks), _head(ci, num_classes, p))


def _head(channels: int, num_classes: int, p: Mapping[str, Any]) -> ConcatPoolHead:
    return ConcatPoolHead(channels, int(p["head_hidden"]), num_classes, float(p["dropout"]))


def downsampling(params: Mapping[str, Any]) -> int:
    """How many input samples one output step of the last stage covers."""
    stages = len(_depths(params["depths"]))
    return 2 ** (stages - 1) * (4 if params["arch"] == "xresnet" else 1)


def input_spec(params: Mapping[str, Any], ctx: SpaceContext) -> InputSpec:
    return InputSpec("signal", ctx.n_leads, 1, ctx.n_samples, layout="leads_channels")


def validate(params: Mapping[str, Any], ctx: SpaceContext) -> None:
    if params["input_repr"] != "signal":
        raise ConfigError(
            f"resnet1d takes the signal input only (input_repr 'signal'), not "
            f"{params['input_repr']!r}"
        )
    if params["arch"] not in ARCHS:
        raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, not {params['arch']!r}")
    try:
        _depths(params["depths"])
    except ValueError as e:
        raise ConfigError(f"depths: {e}") from None
    if params["expansion"] not in (1, 4):
        raise ConfigError(
            f"expansion must be 1 (basic blocks) or 4 (bottleneck), not {params['expansion']!r}"
        )
    for key in ("kernel_size", "kernel_size_stem"):
        if int(params[key]) < 1 or int(params[key]) % 2 == 0:
            raise ConfigError(f"{key} must be a positive odd number, not {params[key]!r}")
    if int(params["width"]) < 2 or int(params["head_hidden"]) < 1:
        raise ConfigError("width must be >= 2 and head_hidden >= 1")
    if not 0 <= float(params["dropout"]) < 1:
        raise ConfigError(f"dropout must be in [0, 1), not {params['dropout']!r}")
    if ctx.n_samples < downsampling(params):
        raise ConfigError(
            f"records of {ctx.n_samples} samples are too short for this resnet1d "
            f"({downsampling(params)}x downsampling)"
        )


def search_space(ctx: SpaceContext) -> dict[str, Dim]:
    return {
        "arch": Categorical(ARCHS),
        "depths": Categorical(("1-1-1", "2-2-2-2", "3-4-6-3", "3-4-23-3")),
        "width": Categorical((32, 64, 128)),
        "kernel_size": Categorical((3, 5, 7)),
        "kernel_size_stem": Categorical((5, 7)),
        "expansion": Categorical((1, 4)),
        "head_hidden": Categorical((64, 128, 256)),
        "dropout": Float(0.0, 0.5),
        **TRAIN_DIMS,
        "lr": Float(1e-3, 2e-2, log=True),
        "weight_decay": Float(1e-4, 0.1, log=True),
    }


def build(input_spec: InputSpec, num_classes: int, ctx: SpaceContext, **params: Any) -> nn.Module:
    make = _wang if params["arch"] == "wang" else _xresnet
    return make(input_spec.channels, num_classes, params)


def suggest(trial: TrialLike, space: SearchSpace, ctx: SpaceContext) -> dict[str, Any]:
    return sample_space(trial, space, DEFAULTS, CONDITIONS)


SPEC = register_model(
    ModelSpec(
        name="resnet1d",
        description="1-D ResNets of the PTB-XL benchmark: resnet1d_wang, xresnet1d (presets)",
        build=build,
        suggest=suggest,
        input_spec=input_spec,
        search_space=search_space,
        defaults=DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        presets=PRESETS,
        conditions=CONDITIONS,
        validate=validate,
    )
)
