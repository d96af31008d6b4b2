"""Every option shared by several commands, declared once as an ``Annotated`` alias.

A command writes ``tracking_uri: TrackingUri = None``; the flag name, environment variable and
help live here (huggingface_hub's CLI style), so ``--tracking-uri`` reads the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "DATA_ENV",
    "CACHE_ENV",
    "STORAGE_ENV",
    "CacheDir",
    "DataDir",
    "Device",
    "Experiment",
    "CostProbe",
    "MaxCostRatio",
    "MaxEpochSeconds",
    "MaxLatencyMs",
    "MaxSizeMb",
    "Model",
    "OnBadRecord",
    "Port",
    "Preset",
    "SamplingRate",
    "Seed",
    "Storage",
    "SystemMetrics",
    "Task",
    "Teacher",
    "ThresholdPolicy",
    "Calibrate",
    "TrackingUri",
    "TrustPickle",
    "Workers",
]

DATA_ENV = "ECG_SWEEP_DATA"
CACHE_ENV = "ECG_SWEEP_CACHE"
STORAGE_ENV = "ECG_SWEEP_STORAGE"

# --- data ---------------------------------------------------------------------------------------
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar=DATA_ENV, help="PTB-XL root folder (env ECG_SWEEP_DATA)."),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar=CACHE_ENV,
        help="Decoded-signal cache folder (default ~/.cache/ecg-sweep; env ECG_SWEEP_CACHE).",
    ),
]
SamplingRate = Annotated[int, typer.Option("--sampling-rate", help="100 or 500 Hz records.")]
Task = Annotated[
    str,
    typer.Option(
        "--task", help="Label task: superdiagnostic, subdiagnostic, diagnostic, form, rhythm."
    ),
]
OnBadRecord = Annotated[
    str,
    typer.Option("--on-bad-record", help="error: stop at a bad record; skip: drop bad records."),
]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Decode processes (default: all cores).")
]

# --- models and training ------------------------------------------------------------------------
Model = Annotated[str, typer.Option("--model", "-m", help="Model family (see `ecg-sweep models`).")]
Preset = Annotated[
    str | None,
    typer.Option("--preset", help="Named model preset, e.g. 'tiny' for quick checks."),
]
Teacher = Annotated[
    str | None,
    typer.Option(
        "--teacher",
        help="DeiT teacher: a checkpoint path or an MLflow model URI (models:/ecg-M@champion).",
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load a model that only unpickles (or runs as TorchScript): that runs code stored "
        "in the model. Only for stores whose every writer you trust.",
    ),
]
ThresholdPolicy = Annotated[
    str | None,
    typer.Option(
        "--threshold-policy",
        help="How validation sets the decision thresholds: exact_match (jointly, for subset "
        "accuracy), f1 (per class) or fixed (0.5). Default: the training default (see README).",
    ),
]
Calibrate = Annotated[
    bool | None,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Temperature scaling fitted on validation, stored in the model and applied by "
        "predict (default: off).",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device", help="auto, cpu or cuda[:N] (where training, fine-tuning and QAT run)."
    ),
]
Seed = Annotated[
    int, typer.Option("--seed", help="Random seed (sampler, training, calibration batches).")
]

# --- stores -------------------------------------------------------------------------------------
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
    ),
]
Experiment = Annotated[
    str | None,
    typer.Option("--experiment", help="MLflow experiment (default ecg-<model>)."),
]
Storage = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar=STORAGE_ENV,
        help="Optuna storage URL (default sqlite:///optuna.db; postgresql://... for many machines).",
    ),
]

SystemMetrics = Annotated[
    bool,
    typer.Option(
        "--system-metrics/--no-system-metrics",
        envvar="MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING",
        help="Log MLflow system metrics (CPU, memory, disk, network; GPU with pynvml) into each "
        "training run, every $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL s (default 10; env "
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING).",
    ),
]

# --- cost budgets (optimize: before training; promote: as measured) ------------------------------
MaxLatencyMs = Annotated[
    float | None,
    typer.Option(
        "--max-latency-ms",
        help="Budget: CPU latency at batch 1 (p50, ms). optimize: trials whose int8 model is "
        "estimated over it are not trained; promote: refuse a version measured over it.",
    ),
]
MaxSizeMb = Annotated[
    float | None,
    typer.Option(
        "--max-size-mb",
        help="Budget: size of the int8 ONNX file (MB); trials over it are not trained.",
    ),
]
MaxEpochSeconds = Annotated[
    float | None,
    typer.Option(
        "--max-epoch-seconds",
        help="Budget: projected seconds per epoch (training + validation); trials over it are "
        "not trained.",
    ),
]
MaxCostRatio = Annotated[
    float,
    typer.Option(
        "--max-cost-ratio",
        help="Without budgets: stop a trial projected to train more than R x slower per epoch "
        "than the family's default configuration on the same data (0: off).",
    ),
]
CostProbe = Annotated[
    bool,
    typer.Option(
        "--cost-probe/--no-cost-probe",
        help="Measure every trial's cost (params, int8 size and latency, epoch time) before it "
        "trains; budgets and the guard need it.",
    ),
]

# --- servers ------------------------------------------------------------------------------------
Port = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")]
