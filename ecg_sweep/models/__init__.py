"""Model zoo: a registry of timm families, each with its factory, search space and input spec."""

from ecg_sweep.models._classifier import (
    ECGClassifier,
    ModelInfo,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from ecg_sweep.models._input import REPRESENTATIONS, InputAdapter, InputSpec
from ecg_sweep.models._registry import ModelSpec, SpaceContext, get_model_spec, list_models

__all__ = [
    "ECGClassifier",
    "InputAdapter",
    "InputSpec",
    "ModelInfo",
    "ModelSpec",
    "REPRESENTATIONS",
    "SpaceContext",
    "build_model",
    "get_model_spec",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
]
