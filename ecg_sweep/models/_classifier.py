"""ECGClassifier: input adapter + timm backbone + what prediction needs to know."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ecg_sweep.errors import ConfigError
from ecg_sweep.models._input import InputAdapter
from ecg_sweep.models._registry import SpaceContext, get_model_spec

if TYPE_CHECKING:
    from ecg_sweep.data.dataset import PreparedData

__all__ = [
    "INFO_KEY",
    "ModelInfo",
    "ECGClassifier",
    "build_model",
    "model_info",
    "save_checkpoint",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

# Key of the ModelInfo wherever it travels with a model: checkpoints, the metadata of an ONNX
# file (``metadata_props``) and of an MLflow model (``MLmodel`` metadata).
INFO_KEY = "ecg_sweep"


@dataclass(frozen=True)
class ModelInfo:
    """Everything needed to rebuild the model and preprocess a record for it."""

    model: str
    params: dict[str, Any]
    classes: tuple[str, ...]
    sampling_rate: int
    n_leads: int
    n_samples: int
    standardizer: dict[str, Any]  # Standardizer.as_dict()
    thresholds: tuple[float, ...] | None = None  # per-class, tuned on validation
    extra: dict[str, Any] = field(default_factory=dict)
    # How labels are decided (metrics.THRESHOLD_POLICIES; None: unknown, a model logged before
    # policies existed) and whether a record where no class passes gets its most probable one.
    threshold_policy: str | None = None
    at_least_one: bool = False
    # Temperature scaling fitted on validation: probabilities are sigmoid(logits / temperature)
    # (1.0: uncalibrated). The thresholds apply to these probabilities.
    temperature: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["thresholds"] = None if self.thresholds is None else list(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelInfo:
        d = dict(d)
        d["classes"] = tuple(d["classes"])
        if d.get("thresholds") is not None:
            d["thresholds"] = tuple(float(t) for t in d["thresholds"])
        return cls(**d)

    @property
    def context(self) -> SpaceContext:
        return SpaceContext(n_leads=self.n_leads, n_samples=self.n_samples)

    def with_thresholds(self, thresholds: Any, **decision: Any) -> ModelInfo:
        """This info with per-class decision thresholds (tuned on validation) and optionally
        ``threshold_policy``, ``at_least_one`` and ``temperature``."""
        unknown = set(decision) - {"threshold_policy", "at_least_one", "temperature"}
        if unknown:
            raise TypeError(f"with_thresholds: unexpected {sorted(unknown)}")
        return dataclasses.replace(self, thresholds=tuple(float(t) for t in thresholds), **decision)


def model_info(
    model: str, params: Mapping[str, Any], data: PreparedData, **extra: Any
) -> ModelInfo:
    """What a model trained on ``data`` with ``params`` needs to be rebuilt and fed records.

    ``params`` are completed with the family's defaults, reduced to those that apply (e.g. no
    image geometry for the signal input) and validated against the data's geometry.
    """
    spec = get_model_spec(model)
    full = spec.params(**dict(params))
    info = ModelInfo(
        model=model,
        params=spec.active_params(full),
        classes=data.classes,
        sampling_rate=data.sampling_rate,
        n_leads=data.n_leads,
        n_samples=data.n_samples,
        standardizer=data.standardizer.as_dict(),
        extra=dict(extra),
    )
    spec.validate(full, info.context)
    return info


class ECGClassifier(nn.Module):
    """(B, 12, T) millivolts -> (B, C) logits.

    For distilled backbones (DeiT) in training mode the backbone returns (class, distillation)
    logits; in eval mode their mean. ``info`` travels with the module and its checkpoints.
    """

    def __init__(self, adapter: InputAdapter, backbone: nn.Module, info: ModelInfo):
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.info = info

    @property
    def distilled(self) -> bool:
        return hasattr(self.backbone, "set_distilled_training")

    def set_distilled_training(self, enable: bool) -> None:
        if self.distilled:
            self.backbone.set_distilled_training(enable)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(self.adapter(x))


def build_model(info: ModelInfo, pretrained_weights: str | Path | None = None) -> ECGClassifier:
    """Build the model that ``info`` describes (random init, or a local weights file)."""
    spec = get_model_spec(info.model)
    params = spec.params(**{k: v for k, v in info.params.items() if k in spec.defaults})
    ctx = info.context
    spec.validate(params, ctx)
    input_spec = spec.input_spec(params, ctx)
    mean = torch.tensor(info.standardizer["mean"], dtype=torch.float32)
    std = torch.tensor(info.standardizer["std"], dtype=torch.float32)
    adapter = InputAdapter(input_spec, mean, std, info.n_samples)
    backbone = spec.build(input_spec, len(info.classes), ctx, **params)
    if pretrained_weights:
        _load_pretrained(backbone, Path(pretrained_weights))
    return ECGClassifier(adapter, backbone, info)


def _load_pretrained(backbone: nn.Module, path: Path) -> None:
    """Copy every tensor whose name and shape match (the head and stem may differ)."""
    if not path.is_file():
        raise ConfigError(f"{path}: pretrained weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot read pretrained weights: {e}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"{path}: no tensor matches the {type(backbone).__name__} backbone")
    backbone.load_state_dict(usable, strict=False)
    log.info(
        "loaded %d/%d tensors from %s (%d skipped: missing or shape differs)",
        len(usable), len(own), path, len(own) - len(usable),
    )  # fmt: skip


def save_checkpoint(model: ECGClassifier, path: str | Path) -> Path:
    """Write ``{info, state_dict}`` atomically and durably (temp file, fsync, rename, fsync dir).

    Without the fsyncs a crash soon after the rename can leave ``path`` empty or truncated on
    disk even though the rename "happened"; the old checkpoint would be lost with it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"info": model.info.as_dict(), "state_dict": model.state_dict()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> ECGClassifier:
    """Rebuild the model from a checkpoint, loading tensors with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        info = ModelInfo.from_dict(ckpt["info"])
    except Exception as e:
        raise ConfigError(
            f"{path}: not an ecg-sweep checkpoint ({type(e).__name__}: {e})"
        ) from None
    model = build_model(info)
    model.load_state_dict(ckpt["state_dict"])
    return model
