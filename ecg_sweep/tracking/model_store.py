"""Models in MLflow: the one model logger (torch and ONNX), and loading models back.

Every model ecg-sweep logs (a trial's best, a ``train`` run's, each compression variant) goes
through :func:`log_model`, attached to its run by id (never through the fluent active run), with
a signature, an input example and the :class:`~ecg_sweep.models.ModelInfo` in its metadata.
:func:`load_model` reads a local checkpoint, a local ``.onnx`` file or any MLflow model URI.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_sweep.engine import eval_mode
from ecg_sweep.errors import ConfigError, TrackingError
from ecg_sweep.models import (
    INFO_KEY,
    ECGClassifier,
    ModelInfo,
    build_model,
    get_model_spec,
    load_checkpoint,
)
from ecg_sweep.models.onnx import OnnxModule, load_onnx_file
from ecg_sweep.tracking.client import Tracker, use_store
from ecg_sweep.tracking.contract import (
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_DIR,
    MODEL_ARTIFACT,
    MODEL_URI_TAG,
    MODEL_WEIGHTS_FILE,
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
    "logged_model_uri",
    "load_logged_weights",
]

log = logging.getLogger(__name__)

# serialization of torch models: "auto" = pt2 (torch.export; loads without ecg-sweep's code),
# falling back to pickle when export fails; "pickle" = always pickle (torch.ao-quantized modules
# and TorchScript programs, which pt2 cannot serialize). Either way the model also carries its
# weights-only state dict (MODEL_WEIGHTS_FILE), which is what ecg-sweep itself loads: pickles
# and TorchScript programs run code when loaded, and are loaded only with trust_pickle.
SERIALIZATIONS = ("auto", "pickle")

TRUST_FLAG = "--trust-pickle"


def _example_output(artifact: nn.Module | Path, example: np.ndarray) -> np.ndarray:
    if isinstance(artifact, Path):
        return OnnxModule(artifact).run(example)
    with torch.no_grad():
        return np.asarray(artifact(torch.from_numpy(example)))


def _in_run_experiment(fn):
    """Run ``fn(tracker, ...)`` with ``MLFLOW_EXPERIMENT_ID`` set to the tracker's experiment.

    ``Model.log(run_id=...)`` creates its LoggedModel in the *fluent* active experiment, which
    is the Default experiment (0) when none is set: the model would be listed there instead of
    beside its run. The lock keeps trial threads from swapping the variable under each other.
    """

    @functools.wraps(fn)
    def wrapper(tracker: Tracker, *args, **kwargs):
        if tracker.experiment_id is None:
            return fn(tracker, *args, **kwargs)
        with _EXPERIMENT_ENV_LOCK:
            old = os.environ.get(_EXPERIMENT_ENV)
            os.environ[_EXPERIMENT_ENV] = str(tracker.experiment_id)
            try:
                return fn(tracker, *args, **kwargs)
            finally:
                if old is None:
                    os.environ.pop(_EXPERIMENT_ENV, None)
                else:
                    os.environ[_EXPERIMENT_ENV] = old

    return wrapper


_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_ID"
_EXPERIMENT_ENV_LOCK = threading.RLock()


@_in_run_experiment
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
    use_store(tracker.uri)
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
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-weights-") as d:
        weights = Path(d) / MODEL_WEIGHTS_FILE
        torch.save(artifact.state_dict(), weights)
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
                    extra_files=[str(weights)],
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


def load_model(
    source: str | Path, trust_pickle: bool = False
) -> tuple[nn.Module | OnnxModule, ModelInfo]:
    """Load a model from a local checkpoint path or an MLflow URI (runs:/, models:/, ...).

    ONNX models (an MLflow ``onnx`` flavour, or a local ``.onnx`` file written by
    ``ecg_sweep.compression``) come back as an :class:`OnnxModule`: a torch-like callable taking
    a (B, 12, T) float32 tensor and returning (B, C) logits, with ``.eval()``, run by ONNX Runtime.
    Torch models are rebuilt from the :class:`ModelInfo` in their metadata and their weights read
    without executing code (:func:`_load_without_code`); a model that can only be unpickled (or
    run as TorchScript) is refused unless ``trust_pickle``, as loading it runs code from the store.
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
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-model-") as d:
        model, why = _load_without_code(text, info, d)
    if model is not None:
        return model, info
    if not trust_pickle:
        raise ConfigError(
            f"{text}: {why}; loading it would run code stored in the model: pass {TRUST_FLAG} "
            "only if you trust everyone who can write to this store"
        )
    try:
        model = mlflow.pytorch.load_model(text, map_location="cpu")
    except Exception as e:
        raise TrackingError(f"{text}: cannot load model: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(model, nn.Module):
        raise TrackingError(
            f"{text}: the unpickled model is a {type(model).__name__}, not a module"
        )
    return eval_mode(model), info


def load_teacher(source: str | None, model: str, trust_pickle: bool = False) -> nn.Module | None:
    """A frozen teacher from a checkpoint path or an MLflow URI; only DeiT distils."""
    if not source:
        return None
    if not get_model_spec(model).distilled:
        raise ConfigError(f"--teacher applies to distilled models (deit), not {model!r}")
    teacher, _ = load_model(source, trust_pickle)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return eval_mode(teacher)


# --- torch models rebuilt from their metadata, weights read without executing code -------------


def _rebuild(info: ModelInfo) -> nn.Module | None:
    """An untrained module of the architecture ``info`` describes, or None when its metadata
    cannot describe it (a structured-pruned model: its layers no longer match its params; the
    torch.ao static / QAT variants: TorchScript programs)."""
    if info.extra.get("structured_pruning"):
        return None
    method = info.extra.get("compression")
    if method in (None, "fp32", "prune_l1_unstructured"):
        return build_model(info)
    if method == "quant_dynamic_int8":
        import warnings

        with warnings.catch_warnings():  # torch.ao's deprecation warning, on every call
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(
                eval_mode(build_model(info)), {nn.Linear}, dtype=torch.qint8
            )
    return None


def _weights_only(path: Path, uri: str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise ConfigError(
            f"{uri}: its {path.name} is not a plain state dict: {str(e).splitlines()[0][:200]}"
        ) from None


def _load_without_code(uri: str, info: ModelInfo, dest: str) -> tuple[nn.Module | None, str]:
    """(the model, "") rebuilt from ``info`` with weights that load without unpickling code:
    the weights-only state dict ecg-sweep logs beside every torch model, else the raw tensors
    of its torch.export archive; (None, why) when neither fits."""
    import mlflow

    flavors = mlflow.models.get_model_info(uri).flavors or {}
    if "pytorch" not in flavors:
        return None, f"not a torch model (flavors: {', '.join(sorted(flavors))})"
    model = _rebuild(info)
    if model is None:
        kind = "a structured-pruned" if info.extra.get("structured_pruning") else "a TorchScript"
        return None, f"{kind} model that its metadata cannot rebuild"
    local = _download_model(uri, dest)
    weights = local / "extra_files" / MODEL_WEIGHTS_FILE
    archives = sorted((local / flavors["pytorch"].get("model_data", "data")).glob("*.pt2"))
    if weights.is_file():
        state = _weights_only(weights, uri)
    elif archives:
        state = _pt2_state_dict(archives[0])
    else:
        return None, "a pickle-format PyTorch model (no weights-only state dict)"
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"{uri}: its weights do not fit a {info.model} built from its own metadata: "
            f"{str(e).splitlines()[0][:200]}"
        ) from None
    return eval_mode(model), ""


def _download_model(uri: str, dest: str) -> Path:
    """The local folder of an MLflow model; a failed download is one TrackingError line."""
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dest))
    except Exception as e:
        raise TrackingError(
            f"{uri}: cannot download model: {str(e).splitlines()[0][:200]}"
        ) from None


def _is_onnx_model(uri: str) -> bool:
    import mlflow

    flavors = mlflow.models.get_model_info(uri).flavors or {}
    return "onnx" in flavors and "pytorch" not in flavors


def _load_onnx_uri(uri: str, info: ModelInfo) -> tuple[OnnxModule, ModelInfo]:
    """Download the ONNX file of an MLflow model and open an ONNX Runtime session on it."""
    import mlflow

    conf = mlflow.models.get_model_info(uri).flavors["onnx"]
    with tempfile.TemporaryDirectory(prefix="ecg-sweep-onnx-") as d:
        local = _download_model(uri, d)
        # The session holds the model in memory: the downloaded file may go with the temp dir.
        return load_onnx_file(local / conf.get("data", "model.onnx"), info, uri)


# --- the weights of a logged torch model, read without executing code -------------------------


def logged_model_uri(tracker: Tracker, run_id: str) -> str | None:
    """The MLflow model a run logged: its ``MODEL_URI_TAG``, else the newest LoggedModel whose
    source run it is (``train`` runs, evaluated trials); None when it logged none."""
    run = tracker.get_run(run_id)
    uri = run.data.tags.get(MODEL_URI_TAG)
    if uri:
        return uri
    # Default experiment too: models logged before log_model pinned the run's experiment.
    models = tracker.client.search_logged_models(
        list(dict.fromkeys([run.info.experiment_id, "0"])),
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        max_results=1,
    )
    return models[0].model_uri if models else None


def _pt2_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a torch.export ``.pt2`` archive, read as raw tensor bytes.

    ``torch.export.load`` would unpickle whatever payload the archive marks as pickled (and
    falls back to ``weights_only=False``): here only the weights config (JSON) and the raw
    tensor files are read, and an archive with any pickled weight is refused.
    """
    import json
    import zipfile

    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data/weights/model_weights_config.json")]
        if len(names) != 1:
            raise ConfigError(f"{path.name}: not a torch.export archive with one model")
        base = names[0].rsplit("/", 1)[0]
        config = json.loads(z.read(names[0]))["config"]
        buffers: dict[str, bytearray] = {}
        state: dict[str, torch.Tensor] = {}
        for fqn, meta in config.items():
            if meta.get("use_pickle") or meta.get("tensor_meta") is None:
                raise ConfigError(f"{path.name}: weight {fqn!r} is pickled; refusing to execute it")
            tm = meta["tensor_meta"]
            dtype = _SERIALIZE_TO_TORCH_DTYPE[tm["dtype"]]
            raw = buffers.setdefault(
                meta["path_name"], bytearray(z.read(f"{base}/{meta['path_name']}"))
            )
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(0, dtype=dtype)
            state[fqn] = torch.as_strided(
                flat,
                [d["as_int"] for d in tm["sizes"]],
                [d["as_int"] for d in tm["strides"]],
                tm["storage_offset"]["as_int"],
            ).clone()
    return state


def load_logged_weights(uri: str, dest: str | Path) -> ECGClassifier:
    """The trainable :class:`ECGClassifier` of a logged torch model: rebuilt from the
    :class:`ModelInfo` in its metadata, its weights read from the model's weights-only state
    dict or torch.export archive without executing code. For compressing or fine-tuning what
    ``train`` logged or what a ``models:/`` URI names; compressed variants (ONNX, int8) are
    refused: they are outputs."""
    info = model_info_from_uri(uri)
    if info.extra.get("compression"):
        raise ConfigError(
            f"{uri}: this is the {info.extra['compression']} variant of a compressed model; "
            "compress the fp32 model it came from"
        )
    model, why = _load_without_code(uri, info, str(dest))
    if model is None:
        if why.startswith("not a torch"):
            raise ConfigError(f"{uri}: {why}")
        raise ConfigError(
            f"{uri}: its weights are pickled ({why}), and reading them would "
            "execute code; log the model again with ecg-sweep, or compress the trial's run"
        )
    return model
