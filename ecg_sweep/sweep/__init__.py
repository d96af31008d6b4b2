"""Optuna studies with MLflow tracking: ``optimize()`` and the sampler/pruner registries.

- :mod:`~ecg_sweep.sweep.study`: samplers and pruners by name, the storage, the study lock;
- :mod:`~ecg_sweep.sweep.objective`: one trial (sample, build, fit with pruning, log);
- :mod:`~ecg_sweep.sweep.runs`: the MLflow view of a study (study run, trial runs, summary);
- :mod:`~ecg_sweep.sweep.optimization`: ``optimize()``, one invocation of a shared study.
"""

from ecg_sweep.sweep.objective import Reporter
from ecg_sweep.sweep.optimization import (
    SweepOutcome,
    build_space,
    check_stores,
    optimize,
    study_summary,
)
from ecg_sweep.sweep.study import DEFAULT_STORAGE, PRUNERS, SAMPLERS, make_pruner, make_sampler

__all__ = [
    "DEFAULT_STORAGE",
    "PRUNERS",
    "SAMPLERS",
    "Reporter",
    "SweepOutcome",
    "build_space",
    "check_stores",
    "make_pruner",
    "make_sampler",
    "optimize",
    "study_summary",
]
