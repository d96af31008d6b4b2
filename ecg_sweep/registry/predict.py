"""Prediction on WFDB records with a registered (or any logged) model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg_sweep.data.records import read_record
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import ModelInfo

__all__ = ["Prediction", "predict_records", "record_stem"]


@dataclass(frozen=True)
class Prediction:
    record: str
    probabilities: dict[str, float]
    labels: tuple[str, ...]


def record_stem(path: str | Path) -> Path:
    """``.../00841_lr``, ``.../00841_lr.hea`` or ``.../00841_lr.dat`` -> ``.../00841_lr``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".hea", ".dat") else p


def predict_records(
    model, info: ModelInfo, records: list[str | Path], batch_size: int = 64
) -> list[Prediction]:
    """Read, validate and classify records with the preprocessing stored in ``info``.

    A record whose sampling rate, lead count or length differs from what the model was trained
    on is rejected with a one-line error naming the file (nothing is resampled silently).
    """
    if not records:
        raise ConfigError("no records given")
    stems = [record_stem(r) for r in records]
    signals = np.stack([read_record(s, info.sampling_rate) for s in stems])  # (N, 12, T)
    if signals.shape[-1] != info.n_samples:
        raise ConfigError(
            f"{stems[0]}: {signals.shape[-1]} samples, the model expects {info.n_samples}"
        )
    probs = []
    with torch.no_grad():
        for i in range(0, len(signals), batch_size):
            logits = model(torch.from_numpy(signals[i : i + batch_size]).float())
            probs.append(torch.sigmoid(torch.as_tensor(logits).float()).numpy())
    p = np.concatenate(probs)
    thresholds = np.asarray(info.thresholds if info.thresholds else [0.5] * len(info.classes))
    out = []
    for stem, row in zip(stems, p, strict=True):
        labels = tuple(c for c, v, t in zip(info.classes, row, thresholds, strict=True) if v >= t)
        out.append(
            Prediction(str(stem), dict(zip(info.classes, map(float, row), strict=True)), labels)
        )
    return out
