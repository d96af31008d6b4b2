"""The MLflow model registry side: register a study's winners, promote with a gate, predict.

- :mod:`~ecg_sweep.registry.versions`: registered versions, aliases, the promotion gate;
- :mod:`~ecg_sweep.registry.predict`: classify WFDB records with any logged model.
"""

from ecg_sweep.registry.predict import Prediction, predict_records
from ecg_sweep.registry.versions import (
    RegisteredVersion,
    fold_fingerprint,
    promote,
    register_study_best,
    run_model_uri,
)

__all__ = [
    "Prediction",
    "RegisteredVersion",
    "fold_fingerprint",
    "predict_records",
    "promote",
    "register_study_best",
    "run_model_uri",
]
