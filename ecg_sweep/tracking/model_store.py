"""Models in MLflow: the one model logger (torch and ONNX), and loading models back.

Every model ecg-sweep logs (a trial's best, a ``train`` run's, each compression variant) goes
through :func:`log_model`, attached to its run by id (never through the fluent active run), with
a signature, an input example and the :class:`~ecg_sweep.models.ModelInfo` in its metadata.
:func:`load_model` reads a local checkpoint, a local ``.onnx`` file or any MLflow model URI.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.engine import eval_mode
from ecg_sweep.errors import ConfigError, TrackingError
from ecg_sweep.models import INFO_KEY, ModelInfo, get_model_spec, load_checkpoint
from ecg_sweep.models.onnx import OnnxModule, load_onnx_file
from ecg_sweep.tracking.client import Tracker
from ecg_sweep.tracking.contract import (
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_DIR,
    MODEL_ARTIFACT,
    THRESHOLDS_ARTIFACT,
)

__all__ = [
    "log_model",
    "log_thresholds",
    "load_model",
    "load_teacher",
    "model_info_from_uri",
    "has_checkpoint",
    "download_checkpoint",
]

log = logging.getLogger(__name__)

# serialization of torch models: "auto" = pt2 (torch.export; loads without ecg-sweep's code),
# falling back to pickle when export fails; "pickle" = always pickle (torch.ao-quantized modules
# and TorchScript programs, which pt2 cannot serialize).
SERIALIZATIONS = ("auto", "pickle")


def _example_output(artifact: nn.Module | Path, example: np.ndarray) -> np.ndarray:
    if isinstance(artifact, Path):
        return OnnxModule(artifact).run(example)
    with torch.no_grad():
        return np.asarray(artifact(torch.from_numpy(example)))


def log_model(
    tracker: Tracker,
    run_id: str,
    artifact: nn.Module | Path,
    info: ModelInfo,
    example: np.ndarray,
    serialization: str = "auto",
) -> str:
    """Log ``artifact`` (a torch module, or the path of an ``.onnx`` file) as the MLflow model
    ``model`` of ``run_id``; returns its model URI.

    The signature is inferred from a (2, 12, T) float32 ``example`` and the model's output; the
    :class:`ModelInfo` goes into the model's metadata under ``INFO_KEY``. Requirements are given
    explicitly (MLflow's import-scanning inference is slow).
    """
    import mlflow
    from mlflow.models import Model, infer_signature

    if serialization not in SERIALIZATIONS:
        raise ValueError(f"serialization must be one of {SERIALIZATIONS}, not {serialization!r}")
    example = np.ascontiguousarray(example[:2], dtype=np.float32)
    if isinstance(artifact, nn.Module):
        artifact = artifact.cpu()
        eval_mode(artifact)
    signature = infer_signature(example, _example_output(artifact, example))
    common = {
        "artifact_path": None,  # deprecated by MLflow 3 in favour of name, but still positional
        "name": MODEL_ARTIFACT,
        "run_id": run_id,
        "signature": signature,
        "metadata": {INFO_KEY: info.as_dict()},
    }
    # Model.log resolves the store from the process-wide tracking URI; the run is explicit.
    mlflow.set_tracking_uri(tracker.uri)
    if isinstance(artifact, Path):
        import onnx
        import onnxruntime

        logged = Model.log(
            flavor=mlflow.onnx,
            onnx_model=onnx.load(str(artifact)),
            save_as_external_data=False,
            pip_requirements=[
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={onnxruntime.__version__}",
            ],
            **common,
        )
        return logged.model_uri
    requirements = [f"torch=={torch.__version__.split('+')[0]}", "timm"]
    formats = ("pt2", "pickle") if serialization == "auto" else ("pickle",)
    # MLflow warns on every pickled model; where we pickle, it is deliberate (see SERIALIZATIONS).
    pt_log = logging.getLogger("mlflow.pytorch")
    level = pt_log.level
    for fmt in formats:
        try:
            if fmt == "pickle":
                pt_log.setLevel(logging.ERROR)
            logged = Model.log(
                flavor=mlflow.pytorch,
                pytorch_model=artifact,
                # pt2 needs the example; a forced pickle (compression variants) logs none.
                input_example=example if serialization == "auto" else None,
                serialization_format=fmt,
                pip_requirements=requirements,
                **common,
            )
            return logged.model_uri
        except Exception as e:  # torch.export can fail on exotic modules
            if fmt == formats[-1]:
                raise
            log.warning("pt2 export failed (%s); logging the model with pickle", e)
        finally:
            pt_log.setLevel(level)
    raise AssertionError("unreachable")


def log_thresholds(
    tracker: Tracker, run_id: str, classes: tuple[str, ...], thresholds: Any
) -> None:
    """The validation-tuned per-class decision thresholds of a run's model, as JSON."""
    tracker.log_dict(
        run_id,
        {"classes": list(classes), "thresholds": [float(t) for t in thresholds]},
        THRESHOLDS_ARTIFACT,
    )


def has_checkpoint(tracker: Tracker, run_id: str) -> bool:
    """Whether a run kept its best weights (completed trials of ``optimize`` do)."""
    names = {a.path for a in tracker.client.list_artifacts(run_id, CHECKPOINT_DIR)}
    return CHECKPOINT_ARTIFACT in names


def download_checkpoint(tracker: Tracker, run_id: str, dest: str | Path) -> Path:
    """Download the best weights that a completed trial logged; returns the local file."""
    return Path(tracker.client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(dest)))


def model_info_from_uri(uri: str) -> ModelInfo:
    """The ModelInfo stored in an MLflow model's metadata."""
    import mlflow

    try:
        info = mlflow.models.get_model_info(uri)
    except Exception as e:
        raise TrackingError(
            f"{uri}: cannot resolve model: {str(e).splitlines()[0][:200]}"
        ) from None
    meta = (info.metadata or {}).get(INFO_KEY)
    if meta is None:
        raise ConfigError(f"{uri}: not an ecg-sweep model (no {INFO_KEY!r} metadata)")
    return ModelInfo.from_dict(meta)


def load_model(source: str | Path) -> tuple[nn.Module | OnnxModule, ModelInfo]:
    """Load a model from a local checkpoint path or an MLflow URI (runs:/, models:/, ...).

    ONNX models (an MLflow ``onnx`` flavour, or a local ``.onnx`` file written by
    ``ecg_sweep.compression``) come back as an :class:`OnnxModule`: a torch-like callable taking
    a (B, 12, T) float32 tensor and returning (B, C) logits, with ``.eval()``, run by ONNX Runtime.
    """
    text = str(source)
    if "://" not in text and ":/" not in text:
        if text.endswith(".onnx"):
            return load_onnx_file(Path(text), None, text)
        m = load_checkpoint(text)
        return m, m.info
    import mlflow

    info = model_info_from_uri(text)
    if _is_onnx_model(text):
        return _load_onnx_uri(text, info)
    try:
        model = mlflow.pytorch.load_model(text, map_location="cpu")
    except Exception as e:
        raise TrackingError(f"{text}: cannot load model: {str(e).splitlines()[0][:200]}") from None
    return eval_mode(model), info


def load_teacher(source: str | None, model: str) -> nn.Module | None:
    """A frozen teacher from a checkpoint path or an MLflow URI; only DeiT distils."""
    if not source:
        return None
    if not get_model_spec(model).distilled:
        raise ConfigError(f"--teacher applies to distilled models (deit), not {model!r}")
    teacher, _ = load_model(source)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return eval_mode(teacher)


def _is_onnx_model(uri: str) -> bool:
    import mlflow

    flavors = mlflow.models.get_model_info(uri).flavors or {}
    return "onnx" in flavors and "pytorch" not in flavors


def _load_onnx_uri(uri: str, info: ModelInfo) -> tuple[OnnxModule, ModelInfo]:
    """Download the ONNX file of an MLflow model and open an ONNX Runtime session on it."""
    import mlflow

    conf = mlflow.models.get_model_info(uri).flavors["onnx"]
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-onnx-") as d:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=d))
        except Exception as e:
            raise TrackingError(
                f"{uri}: cannot download model: {str(e).splitlines()[0][:200]}"
            ) from None
        # The session holds the model in memory: the downloaded file may go with the temp dir.
        return load_onnx_file(local / conf.get("data", "model.onnx"), info, uri)
