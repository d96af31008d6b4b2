"""Logging models to MLflow and loading them back (run URIs, registry URIs, local files)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.errors import ConfigError, TrackingError
from ecg_sweep.models import ECGClassifier, ModelInfo, load_checkpoint

__all__ = ["log_torch_model", "load_model", "model_info_from_uri", "INFO_KEY"]

log = logging.getLogger(__name__)

INFO_KEY = "ecg_sweep"  # key of ModelInfo in the MLmodel metadata


def log_torch_model(
    tracking_uri: str, run_id: str, model: ECGClassifier, example: np.ndarray, name: str = "model"
) -> str:
    """Log ``model`` under ``run_id`` with signature, input example and its ModelInfo metadata.

    The default pt2 format (``torch.export``) loads without our code; if export fails we fall
    back to pickle and say so. Returns the model URI. Main-thread only (uses the fluent API
    briefly, re-attaching to the run by id).
    """
    import mlflow
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    example = np.ascontiguousarray(example[:2], dtype=np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, out)
    meta = {INFO_KEY: model.info.as_dict()}
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        for fmt in ("pt2", "pickle"):
            try:
                logged = mlflow.pytorch.log_model(
                    model,
                    name=name,
                    signature=signature,
                    input_example=example,
                    metadata=meta,
                    serialization_format=fmt,
                    # Explicit requirements skip MLflow's slow import-scanning inference.
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "timm"],
                )
                return logged.model_uri
            except Exception as e:  # torch.export can fail on exotic modules
                if fmt == "pickle":
                    raise
                log.warning("pt2 export failed (%s); logging the model with pickle", e)
    raise AssertionError("unreachable")


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


def load_model(source: str | Path) -> tuple[nn.Module, ModelInfo]:
    """Load a model from a local checkpoint path or an MLflow URI (runs:/, models:/, ...).

    ONNX models (an MLflow ``onnx`` flavour, or a local ``.onnx`` file written by
    ``ecg_sweep.compression``) come back as an ``OnnxModule``: a torch-like callable taking a
    (B, 12, T) float32 tensor and returning (B, C) logits, with ``.eval()``, run by ONNX Runtime.
    """
    text = str(source)
    if "://" not in text and ":/" not in text:
        if text.endswith(".onnx"):
            return _load_onnx_file(Path(text), None, text)
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
    from ecg_sweep.engine import eval_mode

    return eval_mode(model), info


def with_thresholds(model: ECGClassifier, thresholds: Any) -> ECGClassifier:
    model.info = dataclasses.replace(model.info, thresholds=tuple(float(t) for t in thresholds))
    return model


def _is_onnx_model(uri: str) -> bool:
    import mlflow

    flavors = mlflow.models.get_model_info(uri).flavors or {}
    return "onnx" in flavors and "pytorch" not in flavors


def _load_onnx_file(path: Path, info: ModelInfo | None, source: str) -> tuple[Any, ModelInfo]:
    from ecg_sweep.compression.onnx import OnnxModule

    if not path.is_file():
        raise ConfigError(f"{source}: ONNX model file not found")
    module = OnnxModule(path, info)
    if module.info is None:
        raise ConfigError(f"{source}: not an ecg-sweep ONNX model (no {INFO_KEY!r} metadata)")
    return module, module.info


def _load_onnx_uri(uri: str, info: ModelInfo) -> tuple[Any, ModelInfo]:
    """Download the ONNX file of an MLflow model and open an ONNX Runtime session on it."""
    import tempfile

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
        return _load_onnx_file(local / conf.get("data", "model.onnx"), info, uri)
