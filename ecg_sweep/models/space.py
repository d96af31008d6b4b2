"""Declarative search-space dimensions, sampled through an Optuna trial.

A model's search space is a ``dict[name, Dim]``; the name is the factory kwarg / config field /
MLflow param. ``--search-space FILE`` overrides entries (narrow a range, fix a value) without code
changes; :func:`apply_overrides` validates such a file and names the offending key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ecg_sweep.errors import ConfigError

__all__ = [
    "Dim",
    "Int",
    "Float",
    "Categorical",
    "Fixed",
    "SearchSpace",
    "TrialLike",
    "Condition",
    "AUGMENT_CONDITIONS",
    "IMAGE_ONLY",
    "SIGNAL_ONLY",
    "TRAIN_DIMS",
    "apply_overrides",
    "load_space_file",
    "sample_space",
    "select_model_section",
    "space_to_dict",
]


class TrialLike(Protocol):
    """What ``suggest`` needs from a trial (``optuna.Trial`` and ``optuna.trial.FixedTrial``)."""

    def suggest_int(
        self, name: str, low: int, high: int, step: int = 1, log: bool = False
    ) -> int: ...
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class Dim:
    def sample(self, trial: TrialLike, name: str) -> Any:
        raise NotImplementedError

    def values(self) -> tuple | None:
        """All values for a finite dimension, else None (used to check combinations)."""
        return None

    def as_dict(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Dim):
    low: int
    high: int
    step: int = 1
    log: bool = False

    def sample(self, trial: TrialLike, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> tuple:
        return tuple(range(self.low, self.high + 1, self.step))

    def as_dict(self) -> dict:
        return {
            "type": "int",
            "low": self.low,
            "high": self.high,
            "step": self.step,
            "log": self.log,
        }


@dataclass(frozen=True)
class Float(Dim):
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def sample(self, trial: TrialLike, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def as_dict(self) -> dict:
        return {
            "type": "float",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
        }


@dataclass(frozen=True)
class Categorical(Dim):
    choices: tuple

    def sample(self, trial: TrialLike, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def values(self) -> tuple:
        return self.choices

    def as_dict(self) -> dict:
        return {"type": "categorical", "choices": list(self.choices)}


@dataclass(frozen=True)
class Fixed(Dim):
    """A fixed value. Sampled as a one-choice categorical, so it is in the trial's params and
    ``FixedTrial(best_params)`` rebuilds the model under any space."""

    value: Any

    def sample(self, trial: TrialLike, name: str) -> Any:
        return trial.suggest_categorical(name, [self.value])

    def values(self) -> tuple:
        return (self.value,)

    def as_dict(self) -> dict:
        return {"type": "fixed", "value": self.value}


SearchSpace = Mapping[str, Dim]


def space_to_dict(space: SearchSpace) -> dict[str, dict]:
    return {k: v.as_dict() for k, v in space.items()}


def _num(value: Any, key: str, field: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"search space key {key!r}: {field} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ConfigError(
                f"search space key {key!r}: {field} must be an integer, got {value!r}"
            )
        return int(value)
    return float(value)


def _override(key: str, base: Dim, spec: Any) -> Dim:
    if not isinstance(spec, dict):
        return Fixed(_coerce_fixed(key, base, spec))
    unknown = set(spec) - {"low", "high", "step", "log", "choices", "value"}
    if unknown:
        raise ConfigError(
            f"search space key {key!r}: unknown field(s) {', '.join(sorted(unknown))}"
        )
    if "value" in spec:
        return Fixed(_coerce_fixed(key, base, spec["value"]))
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"search space key {key!r}: choices must be a non-empty list")
        coerced = tuple(_coerce_fixed(key, base, c) for c in choices)
        return Categorical(coerced) if len(coerced) > 1 else Fixed(coerced[0])
    if isinstance(base, (Int, Float)):
        kind = int if isinstance(base, Int) else float
        low = _num(spec.get("low", base.low), key, "low", kind)
        high = _num(spec.get("high", base.high), key, "high", kind)
        if low > high:
            raise ConfigError(f"search space key {key!r}: low {low} > high {high}")
        log = bool(spec.get("log", base.log))
        if log and low <= 0:
            raise ConfigError(f"search space key {key!r}: log scale needs low > 0")
        step = spec.get("step", base.step)
        if step is not None:
            step = _num(step, key, "step", kind)
        if kind is int:
            return Int(low, high, step or 1, log)
        return Float(low, high, log, step)
    raise ConfigError(
        f"search space key {key!r}: a categorical parameter takes 'choices' or a fixed value, "
        f"not low/high"
    )


def _coerce_fixed(key: str, base: Dim, value: Any) -> Any:
    allowed = base.values() if isinstance(base, (Categorical, Fixed)) else None
    if isinstance(base, Int):
        value = _num(value, key, "value", int)
    elif isinstance(base, Float):
        value = _num(value, key, "value", float)
    if allowed is not None and value not in allowed and not _compatible(value, allowed):
        raise ConfigError(
            f"search space key {key!r}: {value!r} is not one of the supported values "
            f"{', '.join(map(repr, allowed))}"
        )
    return value


def _compatible(value: Any, allowed: tuple) -> bool:
    # Numeric categoricals (e.g. embed_dim) accept any positive number of the same type, so a
    # file may explore values outside the default list; strings must be known values.
    return (
        all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in allowed)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


def apply_overrides(space: SearchSpace, overrides: Mapping[str, Any], model: str) -> dict[str, Dim]:
    """Return ``space`` with the file's entries applied; unknown keys are an error."""
    out = dict(space)
    for key, spec in overrides.items():
        if key not in space:
            raise ConfigError(
                f"search space key {key!r} is not a parameter of model {model!r}; "
                f"valid: {', '.join(sorted(space))}"
            )
        out[key] = _override(key, space[key], spec)
    return out


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) search-space file into a dict.

    Either the parameters at top level, or under a table named after the model
    (``[vit]`` / ``vit:``), which :func:`select_model_section` picks.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: search-space file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: search-space file must end in .yaml, .yml or .toml")
    except ConfigError:
        raise
    except Exception as e:  # yaml.YAMLError / tomllib.TOMLDecodeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: cannot parse search-space file: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: search-space file must hold a mapping of parameter names")
    return data


def select_model_section(data: Mapping[str, Any], model: str, models: tuple[str, ...]) -> dict:
    """The part of a search-space file that applies to ``model``."""
    if model in data and isinstance(data[model], dict):
        return dict(data[model])
    return {k: v for k, v in data.items() if k not in models}


# --- sampling a space --------------------------------------------------------------------------

# A parameter is active when its condition on the already-sampled params holds.
Condition = Callable[[Mapping[str, Any]], bool]
IMAGE_ONLY: Condition = lambda p: p.get("input_repr") == "image"  # noqa: E731
SIGNAL_ONLY: Condition = lambda p: p.get("input_repr", "signal") == "signal"  # noqa: E731
AUGMENT_ONLY: Condition = lambda p: bool(p.get("augment"))  # noqa: E731

# The training recipe's signal augmentation (TrainConfig fields): on/off, then the strengths,
# sampled only when it is on. Every family's space ends with these.
AUGMENT_DIMS: dict[str, Dim] = {
    "augment": Categorical((False, True)),
    "aug_scale": Float(0.0, 0.3),
    "aug_noise": Float(0.0, 0.2),
    "aug_wander": Float(0.0, 0.3),
    "aug_shift": Float(0.0, 0.2),
    "aug_lead_dropout": Float(0.0, 0.3),
}
AUGMENT_CONDITIONS: dict[str, Condition] = {k: AUGMENT_ONLY for k in AUGMENT_DIMS if k != "augment"}
# Names of the parameters that configure training rather than the network (TrainConfig fields).
TRAIN_DIMS: dict[str, Dim] = {
    "lr": Float(1e-4, 5e-3, log=True),
    "weight_decay": Float(1e-4, 0.1, log=True),
    "batch_size": Categorical((32, 64, 128)),
    **AUGMENT_DIMS,
}


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
