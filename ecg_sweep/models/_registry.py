"""The model registry: name -> ModelSpec(build, suggest, input_spec) (timm ``_registry`` style).

Filled by :func:`register_model` when ``ecg_sweep.models`` imports the family modules; this
module never imports a family (the package ``__init__`` does, as timm's does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ecg_sweep.config import TrainConfig
from ecg_sweep.errors import ConfigError
from ecg_sweep.models._input import InputSpec
from ecg_sweep.models.space import Dim, SearchSpace, TrialLike

__all__ = [
    "ModelSpec",
    "SpaceContext",
    "register_model",
    "get_model_spec",
    "list_models",
    "make_train_config",
]


@dataclass(frozen=True)
class SpaceContext:
    """What a search space depends on besides the trial: the input and the teacher."""

    n_leads: int = 12
    n_samples: int = 1000
    has_teacher: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """Everything that belongs to one model family.

    - ``build(input_spec, num_classes, ctx, **params) -> nn.Module``: the timm backbone;
    - ``suggest(trial, space, ctx) -> dict``: sample a full parameter dict from ``space``;
    - ``input_spec(params, ctx) -> InputSpec``: the representation and geometry of ``params``;
    - ``search_space(ctx) -> dict[str, Dim]``: the default space for this input;
    - ``defaults``: the reference configuration (the original course project's settings) or,
      where the ECG-native input replaced it, the measured default; ``presets``: named
      overrides (``tiny`` for tests);
    - ``train_defaults``: the family's optimizer, lr and weight decay (TrainConfig fields);
    - ``validate(params, ctx)`` / ``validate_space(space, ctx)``: raise ConfigError for
      impossible parameter combinations.
    """

    name: str
    description: str
    build: Callable[..., nn.Module]
    suggest: Callable[[TrialLike, SearchSpace, SpaceContext], dict[str, Any]]
    input_spec: Callable[[Mapping[str, Any], SpaceContext], InputSpec]
    search_space: Callable[[SpaceContext], dict[str, Dim]]
    defaults: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    validate: Callable[[Mapping[str, Any], SpaceContext], None] = lambda params, ctx: None
    validate_space: Callable[[SearchSpace, SpaceContext], None] = lambda space, ctx: None
    distilled: bool = False  # the backbone has a distillation head (DeiT)
    # name -> predicate on the other params: when False the param does not apply (e.g. the
    # image geometry of a model fed the signal representation) and is neither sampled nor logged.
    conditions: Mapping[str, Callable[[Mapping[str, Any]], bool]] = field(default_factory=dict)

    def active_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` without the ones that do not apply to this configuration."""
        return {
            k: v
            for k, v in params.items()
            if k not in self.conditions or self.conditions[k](params)
        }

    def params(self, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Defaults, then a preset, then explicit overrides; unknown keys are an error."""
        out = dict(self.defaults)
        if preset:
            if preset not in self.presets:
                raise ConfigError(
                    f"model {self.name!r} has no preset {preset!r}; valid: "
                    f"{', '.join(sorted(self.presets)) or 'none'}"
                )
            out.update(self.presets[preset])
        for k, v in overrides.items():
            if k not in self.defaults:
                raise ConfigError(
                    f"{k!r} is not a parameter of model {self.name!r}; valid: "
                    f"{', '.join(sorted(self.defaults))}"
                )
            out[k] = v
        return out


_MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    _MODELS[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(sorted(_MODELS))}") from None


def list_models() -> list[str]:
    return sorted(_MODELS)


def make_train_config(model: str, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """The family's optimizer/lr/weight-decay defaults, then ``base``'s explicit (non-default)
    fields, then ``overrides``."""
    spec = get_model_spec(model)
    values = dataclasses.asdict(base or TrainConfig())
    defaults = dataclasses.asdict(TrainConfig())
    for k, v in spec.train_defaults.items():
        if base is None or values[k] == defaults[k]:
            values[k] = v
    values.update(overrides)
    return TrainConfig(**values)
