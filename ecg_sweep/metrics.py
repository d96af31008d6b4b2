"""Multi-label metrics with the names of DESIGN.md §4.

Macro AUROC is the primary metric. F1 uses per-class thresholds tuned on validation and applied
unchanged to test. Accuracy is always named: exact-match (subset) or Hamming, never "accuracy".
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "auc_per_class",
    "f1_per_class",
    "macro_auc",
    "tune_thresholds",
    "macro_f1",
    "exact_match_accuracy",
    "hamming_accuracy",
    "bootstrap_macro_auc_ci",
    "classification_report",
    "majority_baseline",
]


def _auc_columns(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each column of p (..., N, C) against y (..., N, C) by the rank-sum formula.

    Ties get average ranks (= sklearn's roc_auc_score); a column with one label value is NaN.
    """
    ranks = rankdata(p, axis=-2)
    pos = y.sum(axis=-2)
    neg = y.shape[-2] - pos
    rank_sum = (ranks * y).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), auc, np.nan)


def auc_per_class(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(C,) AUROC per class; NaN where the class has only one label value in ``y``."""
    return _auc_columns(np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64))


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean AUROC over the classes where it is defined (NaN if none is)."""
    auc = auc_per_class(y, p)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def f1_per_class(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(C,) F1 of binary predictions ``pred`` against ``y``; 0 where a class has no positive."""
    tp = (pred * y).sum(axis=0)
    fp = (pred * (1 - y)).sum(axis=0)
    fn = ((1 - pred) * y).sum(axis=0)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, 0.0)


def tune_thresholds(y: np.ndarray, p: np.ndarray, grid: int = 99) -> np.ndarray:
    """Per-class threshold maximizing F1 on (validation) data; 0.5 for a class never positive."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    candidates = np.linspace(0.01, 0.99, grid)
    out = np.full(y.shape[1], 0.5)
    for c in range(y.shape[1]):
        if y[:, c].sum() == 0:
            continue
        pred = (p[:, c][:, None] >= candidates[None, :]).astype(np.float64)  # (N, G)
        f1 = f1_per_class(np.repeat(y[:, c][:, None], grid, axis=1), pred)
        out[c] = candidates[int(np.argmax(f1))]
    return out


def _predict(p: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    return (np.asarray(p) >= np.asarray(thresholds)).astype(np.float64)


def macro_f1(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5) -> float:
    return float(f1_per_class(np.asarray(y, dtype=np.float64), _predict(p, thresholds)).mean())


def exact_match_accuracy(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5
) -> float:
    """Subset accuracy: the fraction of records whose whole label set is right."""
    return float((_predict(p, thresholds) == np.asarray(y)).all(axis=1).mean())


def hamming_accuracy(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5) -> float:
    """The fraction of (record, class) decisions that are right."""
    return float((_predict(p, thresholds) == np.asarray(y)).mean())


def bootstrap_macro_auc_ci(
    y: np.ndarray,
    p: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    block: int = 100,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of macro AUROC, vectorized in blocks of resamples."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if n <= 0 or len(y) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n, block):
        b = min(block, n - start)
        idx = rng.integers(0, len(y), size=(b, len(y)))  # (b, N)
        auc = _auc_columns(y[idx], p[idx])  # (b, C)
        valid = np.isfinite(auc).any(axis=1)
        with np.errstate(invalid="ignore"):
            stats.append(np.nanmean(np.where(np.isfinite(auc), auc, np.nan)[valid], axis=1))
    s = np.concatenate(stats)
    if not len(s):
        return float("nan"), float("nan")
    return float(np.quantile(s, alpha / 2)), float(np.quantile(s, 1 - alpha / 2))


def classification_report(
    y: np.ndarray,
    p: np.ndarray,
    thresholds: np.ndarray,
    classes: tuple[str, ...],
    prefix: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """All end-of-run metrics for one split, keyed ``<prefix>_<metric>`` (DESIGN.md §4 names)."""
    aucs = auc_per_class(y, p)
    out = {
        f"{prefix}_macro_auc": macro_auc(y, p),
        f"{prefix}_macro_f1": macro_f1(y, p, thresholds),
        f"{prefix}_exact_match_accuracy": exact_match_accuracy(y, p, thresholds),
        f"{prefix}_hamming_accuracy": hamming_accuracy(y, p, thresholds),
    }
    for c, a in zip(classes, aucs, strict=True):
        out[f"{prefix}_auc_{c}"] = float(a)
    lo, hi = bootstrap_macro_auc_ci(y, p, n=n_bootstrap, seed=seed)
    out[f"{prefix}_macro_auc_ci_low"] = lo
    out[f"{prefix}_macro_auc_ci_high"] = hi
    return out


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """The trivial baselines every model must beat, on ``y_test``.

    Exact-match and F1: predict the most frequent training label set for everyone ("NORM for
    everyone" on PTB-XL: exact-match 0.42, macro F1 0.12). AUROC: a constant scores 0.5.
    """
    from collections import Counter

    rows = Counter(map(tuple, np.asarray(y_train).astype(int)))
    majority = np.asarray(rows.most_common(1)[0][0], dtype=np.float64)
    p = np.broadcast_to(majority, np.asarray(y_test).shape)
    return {
        "test_exact_match_accuracy": exact_match_accuracy(y_test, p, 0.5),
        "test_macro_f1": macro_f1(y_test, p, 0.5),
        "test_macro_auc": 0.5,
    }
