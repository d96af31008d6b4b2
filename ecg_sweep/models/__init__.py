"""Model zoo: a registry of model families (timm backbones and the 1-D resnet1d), each with its factory, search space and input spec.

Importing this package imports every family module, which registers it (timm's pattern: the
registry in ``_registry.py`` never imports a family).
"""

from ecg_sweep.models import (  # noqa: F401  (registers them)
    convnext,
    deit,
    efficientnetv2,
    resnet1d,
    vit,
)
from ecg_sweep.models._classifier import (
    INFO_KEY,
    ECGClassifier,
    ModelInfo,
    build_model,
    load_checkpoint,
    model_info,
    save_checkpoint,
)
from ecg_sweep.models._input import REPRESENTATIONS, InputAdapter, InputSpec
from ecg_sweep.models._registry import (
    ModelSpec,
    SpaceContext,
    get_model_spec,
    list_models,
    make_train_config,
)

__all__ = [
    "INFO_KEY",
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
    "make_train_config",
    "model_info",
    "save_checkpoint",
]
