"""Model registry (aliases, promotion gate) and prediction with registered models."""

from ecg_sweep.registry._registry import (
    CHALLENGER,
    CHAMPION,
    RegisteredVersion,
    fold_fingerprint,
    promote,
    register_study_best,
    registered_name,
    run_model_uri,
)
from ecg_sweep.registry.predict import Prediction, predict_records

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Prediction",
    "RegisteredVersion",
    "predict_records",
    "promote",
    "register_study_best",
    "registered_name",
    "run_model_uri",
    "fold_fingerprint",
]
