"""Prediction on WFDB records with a registered (or any logged) model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg_sweep.data.records import read_record
from ecg_sweep.errors import ConfigError
from ecg_sweep.metrics import apply_thresholds
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
    """Read, validate and classify records with the preprocessing and decision stored in
    ``info``: probabilities ``sigmoid(logits / info.temperature)``, a label where a probability
    reaches its class threshold, and with ``info.at_least_one`` the most probable class where
    none does.

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
            logits = torch.as_tensor(logits).float() / float(info.temperature)
            probs.append(torch.sigmoid(logits).numpy())
    p = np.concatenate(probs)
    thresholds = np.asarray(info.thresholds if info.thresholds else [0.5] * len(info.classes))
    decided = apply_thresholds(p, thresholds, at_least_one=info.at_least_one)
    out = []
    for stem, row, chosen in zip(stems, p, decided, strict=True):
        labels = tuple(c for c, d in zip(info.classes, chosen, strict=True) if d)
        out.append(
            Prediction(str(stem), dict(zip(info.classes, map(float, row), strict=True)), labels)
        )
    return out
