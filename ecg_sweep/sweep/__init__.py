"""Optuna studies with MLflow tracking: ``optimize()`` and the sampler/pruner registries."""

from ecg_sweep.sweep._optimize import SweepOutcome, build_space, optimize, study_summary
from ecg_sweep.sweep.objective import Reporter
from ecg_sweep.sweep.study import DEFAULT_STORAGE, PRUNERS, SAMPLERS

__all__ = [
    "DEFAULT_STORAGE",
    "PRUNERS",
    "SAMPLERS",
    "Reporter",
    "SweepOutcome",
    "build_space",
    "optimize",
    "study_summary",
]
