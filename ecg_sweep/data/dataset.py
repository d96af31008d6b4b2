"""Prepared dataset: labelled records split by fold, with a train-fit standardizer.

``prepare(DataConfig)`` is the one entry point: metadata + labels -> cached signals -> splits.
It is called once per process and the result is shared by every trial of a study.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ecg_sweep.data.cache import BadRecord, load_signals
from ecg_sweep.data.ptbxl import SAMPLING_RATES, binarize, load_metadata
from ecg_sweep.errors import DataError

if TYPE_CHECKING:  # config sits above data in the layers; data only reads its fields
    from ecg_sweep.config import DataConfig

__all__ = ["Split", "Standardizer", "PreparedData", "prepare"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    name: str
    x: np.ndarray  # (N, 12, T) float16 millivolts, unstandardized
    y: np.ndarray  # (N, C) float32 multi-hot
    ecg_ids: np.ndarray  # (N,) int64
    # PTB-XL ``sex`` (0 male, 1 female) and ``age`` (years; 300 = over 89), float64 with NaN
    # where missing (or the database lacks the column): the subgroups of the test metrics
    sex: np.ndarray | None = None
    age: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ecg_ids)


@dataclass(frozen=True)
class Standardizer:
    """(x - mean) / std, with statistics fit on the training split only.

    ``mode="global"`` (the benchmark's StandardScaler over all samples) gives shape (1,) stats;
    ``"per_lead"`` gives (12,); ``"none"`` is the identity.
    """

    mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, mode: str = "global", chunk: int = 2048) -> Standardizer:
        if mode == "none":
            return cls("none", (0.0,), (1.0,))
        if mode not in ("global", "per_lead"):
            raise DataError(f"standardize must be global, per_lead or none, not {mode!r}")
        # Accumulate in float64 over chunks: x may be a multi-GB float16 array.
        axes = (0, 1, 2) if mode == "global" else (0, 2)
        n = 0
        s = s2 = 0.0
        for i in range(0, len(x), chunk):
            c = np.asarray(x[i : i + chunk], dtype=np.float64)
            s = s + c.sum(axis=axes)
            s2 = s2 + np.square(c).sum(axis=axes)
            n += c.size // (1 if mode == "global" else c.shape[1])
        mean = np.atleast_1d(s / n)
        std = np.sqrt(np.maximum(np.atleast_1d(s2 / n) - mean**2, 1e-12))
        return cls(mode, tuple(map(float, mean)), tuple(map(float, std)))

    def as_dict(self) -> dict:
        return {"mode": self.mode, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(d["mode"], tuple(d["mean"]), tuple(d["std"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Broadcastable (1 or 12, 1) float32 mean and std for (..., 12, T) inputs."""
        return (
            np.asarray(self.mean, dtype=np.float32)[:, None],
            np.asarray(self.std, dtype=np.float32)[:, None],
        )


@dataclass(frozen=True)
class PreparedData:
    config: DataConfig
    root: Path
    sampling_rate: int
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    standardizer: Standardizer
    skipped: tuple[BadRecord, ...]
    cache_path: Path
    # sha256 over root, rate, both CSVs and every record file's size and mtime (data.cache):
    # the digest of the MLflow dataset input every run logs
    fingerprint: str = ""

    @property
    def n_leads(self) -> int:
        return self.train.x.shape[1]

    @property
    def n_samples(self) -> int:
        return self.train.x.shape[2]


def _column(part: pd.DataFrame, name: str) -> np.ndarray:
    if name not in part.columns:
        return np.full(len(part), np.nan)
    return pd.to_numeric(part[name], errors="coerce").to_numpy(dtype=np.float64)


def prepare(cfg: DataConfig, progress: Callable[[int, int], None] | None = None) -> PreparedData:
    """Load (decoding into the cache once) and split the dataset described by ``cfg``."""
    if cfg.root is None:
        raise DataError("no dataset given: pass --data-dir DIR or set ECG_SWEEP_DATA")
    if cfg.sampling_rate not in SAMPLING_RATES:
        raise DataError(f"--sampling-rate must be 100 or 500, not {cfg.sampling_rate}")
    folds = {"train": cfg.train_folds, "val": cfg.val_folds, "test": cfg.test_folds}
    seen: set[int] = set()
    for name, fs in folds.items():
        if not fs:
            raise DataError(f"{name} folds are empty")
        if seen & set(fs):
            raise DataError(f"{name} folds {sorted(seen & set(fs))} overlap another split")
        seen |= set(fs)
    meta = load_metadata(cfg.root, cfg.task)
    cache = load_signals(
        meta, cfg.sampling_rate, cfg.cache_dir, cfg.on_bad_record, cfg.workers, progress
    )
    if cache.bad:
        log.warning(
            "skipped %d bad record(s): %s",
            len(cache.bad),
            ", ".join(f"{b.ecg_id} ({b.error})" for b in cache.bad[:10])
            + (" ..." if len(cache.bad) > 10 else ""),
        )
    if cache.warnings:
        log.warning(
            "%d record(s) kept despite a warning (see `ecg-sweep data inspect`): %s",
            len(cache.warnings),
            ", ".join(f"{w.ecg_id} ({w.warning})" for w in cache.warnings[:5])
            + (" ..." if len(cache.warnings) > 5 else ""),
        )
    rec = meta.records
    usable = rec[
        (rec["labels"].map(len) > 0).to_numpy() & cache.ok[cache.rows(rec.index.to_numpy())]
    ]
    splits = {}
    for name, fs in folds.items():
        part = usable[usable["strat_fold"].isin(fs)]
        if part.empty:
            raise DataError(
                f"{meta.root}: the {name} split (folds {','.join(map(str, fs))}) is empty after "
                f"dropping unlabelled{' and bad' if cache.bad else ''} records"
            )
        ids = part.index.to_numpy(dtype=np.int64)
        rows = cache.rows(ids)  # ascending: sequential reads from the memmap
        splits[name] = Split(
            name=name,
            x=np.ascontiguousarray(cache.signals[rows]),
            y=binarize(part["labels"], meta.classes),
            ecg_ids=ids,
            sex=_column(part, "sex"),
            age=_column(part, "age"),
        )
    std = Standardizer.fit(splits["train"].x, cfg.standardize)
    return PreparedData(
        config=cfg,
        root=meta.root,
        sampling_rate=cfg.sampling_rate,
        classes=meta.classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        standardizer=std,
        skipped=cache.bad,
        cache_path=cache.path,
        fingerprint=cache.fingerprint,
    )
