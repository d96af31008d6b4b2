"""The MLflow contract: every tag, run name, artifact path, experiment and registered-model name.

The MLflow UI's compare view, ``ecg-sweep compare``, the registry and users' own scripts read
runs by these names (DESIGN.md §4), so they are spelled here and nowhere else. Metric names are
the ``test_*`` / ``val_*`` keys produced by :mod:`ecg_sweep.metrics` and the engine; the params
of a training run are assembled by :func:`ecg_sweep.tracking.training_run.run_params`. Plain
constants and functions: importing this module costs nothing.
"""

from __future__ import annotations

__all__ = [
    "PARENT_TAG",
    "KIND_TAG",
    "KIND_STUDY",
    "KIND_TRIAL",
    "KIND_COMPRESSION",
    "KIND_TRAIN",
    "MODEL_TAG",
    "STUDY_NAME_TAG",
    "TRIAL_NUMBER_TAG",
    "TRIAL_STATE_TAG",
    "STOP_REASON_TAG",
    "MODEL_URI_TAG",
    "BEST_TAG",
    "BEST_RUN_ID_TAG",
    "BEST_TRIAL_NUMBER_TAG",
    "BEST_PARAM_PREFIX",
    "PARAM_CHANGED_PREFIX",
    "METHOD_TAG",
    "SKIPPED_TAG",
    "ERROR_TAG",
    "NOTE_TAG",
    "RECOMMENDED_TAG",
    "COMPRESSION_METHODS_TAG",
    "INFEASIBLE_TAG",
    "COST_PARAMS",
    "COST_SIZE_BYTES_INT8",
    "COST_LATENCY_MS_INT8",
    "COST_LATENCY_MS_FP32",
    "COST_EPOCH_SECONDS",
    "COST_PROBE_SECONDS",
    "MEASURED_LATENCY_MS_INT8",
    "MEASURED_SIZE_BYTES_INT8",
    "COST_LATENCY_RATIO_INT8",
    "COST_SIZE_RATIO_INT8",
    "FOLD_FINGERPRINT_TAG",
    "VERSION_STUDY_TAG",
    "VERSION_TRIAL_TAG",
    "VERSION_RUN_ID_TAG",
    "COMPRESSED_FROM_TAG",
    "PREVIOUS_CHAMPION_TAG",
    "PROMOTED_FORCED_TAG",
    "CHAMPION",
    "DATASET_CONTEXT_TAG",
    "DATASET_CONTEXT_TRAINING",
    "DATASET_CONTEXT_COMPRESSION",
    "SYSTEM_METRICS_PREFIX",
    "dataset_name",
    "CHALLENGER",
    "RUN_STATUS",
    "MODEL_ARTIFACT",
    "MODEL_WEIGHTS_FILE",
    "CHECKPOINT_DIR",
    "CHECKPOINT_FILE",
    "CHECKPOINT_ARTIFACT",
    "THRESHOLDS_ARTIFACT",
    "PER_CLASS_CSV",
    "PER_CLASS_MD",
    "ROC_PLOT",
    "RELIABILITY_PLOT",
    "SUBGROUPS_CSV",
    "SUBGROUPS_MD",
    "MODEL_SUBGROUPS_FILE",
    "SEARCH_SPACE_ARTIFACT",
    "BEST_PARAMS_ARTIFACT",
    "TRIALS_ARTIFACT",
    "STUDY_PLOTS_DIR",
    "COMPRESSION_DIR",
    "COMPRESSION_SUMMARY_CSV",
    "COMPRESSION_SUMMARY_MD",
    "COMPRESSION_TRADEOFF_PLOT",
    "EXPERIMENT_PREFIX",
    "experiment_name",
    "registered_model_name",
    "model_from_experiment",
    "study_run_name",
    "trial_run_name",
    "compression_run_name",
    "train_run_name",
]

# --- run tags -----------------------------------------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a run under another in the UI
KIND_TAG = "ecg_sweep.kind"
KIND_STUDY = "study"
KIND_TRIAL = "trial"
KIND_COMPRESSION = "compression"
KIND_TRAIN = "train"
MODEL_TAG = "ecg_sweep.model"  # the model family
STUDY_NAME_TAG = "optuna.study_name"
TRIAL_NUMBER_TAG = "optuna.trial_number"
TRIAL_STATE_TAG = "optuna.trial_state"  # COMPLETE | PRUNED | FAIL (RUNNING while it trains)
STOP_REASON_TAG = "ecg_sweep.stop_reason"  # why a trial or training ended (patience, pruned, ...)
MODEL_URI_TAG = "ecg_sweep.model_uri"  # the MLflow model a run logged
BEST_TAG = "ecg_sweep.best"  # "true" on the study's current best trial run
# On the study run (tags, not params: a resumed study can change its best).
BEST_RUN_ID_TAG = "best_run_id"
BEST_TRIAL_NUMBER_TAG = "best_trial_number"
BEST_PARAM_PREFIX = "best_param."
# MLflow params are immutable: a param a resumed run logs with a new value goes in this tag.
PARAM_CHANGED_PREFIX = "param_changed."
# Compression runs and the trial run they measure.
METHOD_TAG = "ecg_sweep.method"
SKIPPED_TAG = "ecg_sweep.skipped_reason"
ERROR_TAG = "ecg_sweep.error"
NOTE_TAG = "ecg_sweep.note"
RECOMMENDED_TAG = "ecg_sweep.compression.recommended"  # on the trial run: the int8 variant chosen
COMPRESSION_METHODS_TAG = "ecg_sweep.compression.methods"
# A trial stopped before training because its measured cost breaks a budget or the default
# guard: the tag holds the one-line reason.
INFEASIBLE_TAG = "ecg_sweep.infeasible"

# --- the cost of a trial, measured on the untrained model before its first epoch ---------------
COST_PARAMS = "cost_params"
COST_SIZE_BYTES_INT8 = "cost_size_bytes_int8"  # the ONNX Runtime static QDQ int8 file
COST_LATENCY_MS_INT8 = "cost_latency_ms_p50_bs1_int8"  # CPU, batch 1, p50
COST_LATENCY_MS_FP32 = "cost_latency_ms_p50_bs1_fp32"  # the torch fp32 model, timed alike
COST_EPOCH_SECONDS = "cost_epoch_seconds"  # projected: training + validation of one epoch
COST_PROBE_SECONDS = "cost_probe_seconds"  # what measuring all of the above took
# After compression, on the compressed trial's run: the onnx_int8 variant as measured, and
# estimate / measured (1.0 = the pre-training estimate was exact).
MEASURED_LATENCY_MS_INT8 = "measured_latency_ms_p50_bs1_int8"
MEASURED_SIZE_BYTES_INT8 = "measured_size_bytes_int8"
COST_LATENCY_RATIO_INT8 = "cost_latency_ratio_int8"
COST_SIZE_RATIO_INT8 = "cost_size_ratio_int8"

# Optuna trial state -> MLflow run status (pruned trials were stopped on purpose: KILLED).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}

# --- dataset inputs (the Dataset column of the MLflow UI; `dataset.name` / `dataset.digest` /
# `dataset.context` in run searches) ------------------------------------------------------------
DATASET_CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag
DATASET_CONTEXT_TRAINING = "training"  # study, trial and train runs: train + validation folds
DATASET_CONTEXT_COMPRESSION = "compression"  # calibration, fine-tuning, test-fold evaluation
SYSTEM_METRICS_PREFIX = "system/"  # MLflow's system metrics (--system-metrics)

# --- registered model versions ------------------------------------------------------------------
FOLD_FINGERPRINT_TAG = "ecg_sweep.fold_fingerprint"  # which test fold the metrics come from
VERSION_STUDY_TAG = "ecg_sweep.study"
VERSION_TRIAL_TAG = "ecg_sweep.trial"
VERSION_RUN_ID_TAG = "ecg_sweep.run_id"
COMPRESSED_FROM_TAG = "ecg_sweep.compressed_from_version"
PREVIOUS_CHAMPION_TAG = "previous_champion"
PROMOTED_FORCED_TAG = "promoted_forced"
CHAMPION = "champion"  # the alias that serves
CHALLENGER = "challenger"  # the newest best, waiting for `promote`

# --- artifact paths -----------------------------------------------------------------------------
MODEL_ARTIFACT = "model"  # the name of every logged MLflow model
# a torch model's weights-only state dict, in its MLflow model's extra_files/ (loads unpickled)
MODEL_WEIGHTS_FILE = "ecg_sweep_weights.pt"
CHECKPOINT_DIR = "checkpoint"  # a completed trial's best weights: checkpoint/best.pt
CHECKPOINT_FILE = "best.pt"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
THRESHOLDS_ARTIFACT = "thresholds.json"  # {"classes": [...], "thresholds": [...]}
PER_CLASS_CSV = "metrics/test_per_class.csv"
PER_CLASS_MD = "metrics/test_per_class.md"
ROC_PLOT = "plots/roc_test.png"
RELIABILITY_PLOT = "plots/reliability_test.png"  # calibration: one curve per class, test fold
SUBGROUPS_CSV = "metrics/test_subgroups.csv"  # macro AUROC and count per sex / age band
SUBGROUPS_MD = "metrics/test_subgroups.md"
MODEL_SUBGROUPS_FILE = "test_subgroups.csv"  # the same table inside the logged model (versions)
SEARCH_SPACE_ARTIFACT = "search_space.json"  # on the study run
BEST_PARAMS_ARTIFACT = "best_params.json"
TRIALS_ARTIFACT = "trials.json"
STUDY_PLOTS_DIR = "plots"
COMPRESSION_DIR = "compression"  # on the compressed trial's run
COMPRESSION_SUMMARY_CSV = f"{COMPRESSION_DIR}/summary.csv"
COMPRESSION_SUMMARY_MD = f"{COMPRESSION_DIR}/summary.md"
COMPRESSION_TRADEOFF_PLOT = f"{COMPRESSION_DIR}/tradeoff.png"

# --- names --------------------------------------------------------------------------------------
EXPERIMENT_PREFIX = "ecg-"


def experiment_name(model: str, explicit: str | None = None) -> str:
    """The MLflow experiment of a model family: ``ecg-<model>`` unless ``--experiment`` names one."""
    return explicit or f"{EXPERIMENT_PREFIX}{model}"


def registered_model_name(model: str) -> str:
    """The MLflow registered model of a family: ``ecg-<model>``."""
    return f"{EXPERIMENT_PREFIX}{model}"


def model_from_experiment(name: str) -> str:
    return name.removeprefix(EXPERIMENT_PREFIX)


def dataset_name(root_name: str, sampling_rate: int, task: str) -> str:
    """The MLflow dataset of a prepared PTB-XL folder: ``<folder>-<rate>hz-<task>``."""
    return f"{root_name}-{sampling_rate}hz-{task}"


def study_run_name(study_name: str) -> str:
    return f"study-{study_name}"


def trial_run_name(number: int) -> str:
    return f"trial-{number:04d}"


def compression_run_name(method: str) -> str:
    return f"compress-{method}"


def train_run_name(model: str) -> str:
    return f"train-{model}"
