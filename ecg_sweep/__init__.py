"""ecg-sweep: Optuna sweeps with MLflow tracking for deep-learning ECG diagnosis on PTB-XL."""

__version__ = "0.1.0"
