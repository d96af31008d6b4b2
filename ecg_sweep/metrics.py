"""Multi-label metrics with the names of DESIGN.md §4.

Macro AUROC is the primary metric. Decisions use thresholds tuned on validation by a named
policy (``config.THRESHOLD_POLICIES``) and applied unchanged to test, with the at-least-one-label rule
(a record where no class passes gets its most probable class). Accuracy is always named:
exact-match (subset) or Hamming, never "accuracy". Calibration: Brier score and ECE (10 equal-width
bins), macro over classes. Subgroups: macro AUROC per PTB-XL ``sex`` and ``age`` band.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ecg_sweep.config import THRESHOLD_POLICIES

__all__ = [
    "ECE_BINS",
    "SUBGROUPS",
    "SUBGROUP_MIN_RECORDS",
    "SUBGROUP_MIN_METRIC",
    "auc_per_class",
    "apply_thresholds",
    "thresholds_for_policy",
    "tune_exact_match_thresholds",
    "brier_score",
    "expected_calibration_error",
    "reliability_bins",
    "fit_temperature",
    "subgroup_masks",
    "subgroup_report",
    "subgroup_rows",
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


def apply_thresholds(
    p: np.ndarray, thresholds: np.ndarray | float = 0.5, at_least_one: bool = False
) -> np.ndarray:
    """(N, C) 0/1 decisions; with ``at_least_one`` a record where no class passes its threshold
    gets its most probable class (every labelled PTB-XL record has at least one label)."""
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= np.asarray(thresholds)).astype(np.float64)
    if at_least_one and p.ndim == 2 and p.shape[1] and len(p):
        empty = pred.sum(axis=1) == 0
        pred[np.flatnonzero(empty), p[empty].argmax(axis=1)] = 1.0
    return pred


_predict = apply_thresholds


def macro_f1(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5, at_least_one: bool = False
) -> float:
    pred = _predict(p, thresholds, at_least_one)
    return float(f1_per_class(np.asarray(y, dtype=np.float64), pred).mean())


def exact_match_accuracy(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5, at_least_one: bool = False
) -> float:
    """Subset accuracy: the fraction of records whose whole label set is right."""
    return float((_predict(p, thresholds, at_least_one) == np.asarray(y)).all(axis=1).mean())


def hamming_accuracy(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | float = 0.5, at_least_one: bool = False
) -> float:
    """The fraction of (record, class) decisions that are right."""
    return float((_predict(p, thresholds, at_least_one) == np.asarray(y)).mean())


def tune_exact_match_thresholds(
    y: np.ndarray,
    p: np.ndarray,
    start: np.ndarray | None = None,
    at_least_one: bool = True,
    grid: int = 99,
    rounds: int = 5,
) -> np.ndarray:
    """Thresholds maximizing subset (exact-match) accuracy on (validation) data, jointly.

    Coordinate ascent: one class at a time, the grid value that maximizes exact-match with the
    other classes' thresholds held, until a round changes nothing (at most ``rounds``). Starts
    from ``start`` (default: the per-class F1 thresholds); a move must strictly improve, and ties
    keep the value closest to the current one, so the result is deterministic.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    t = np.array(tune_thresholds(y, p, grid) if start is None else start, dtype=np.float64)
    candidates = np.linspace(0.01, 0.99, grid)
    best = exact_match_accuracy(y, p, t, at_least_one)
    for _ in range(rounds):
        moved = False
        for c in range(y.shape[1]):
            scores = np.empty(grid)
            for g, value in enumerate(candidates):
                trial = t.copy()
                trial[c] = value
                scores[g] = exact_match_accuracy(y, p, trial, at_least_one)
            top = scores.max()
            if top > best + 1e-12:
                ties = np.flatnonzero(scores >= top - 1e-12)
                t[c] = candidates[ties[np.argmin(np.abs(candidates[ties] - t[c]))]]
                best, moved = top, True
        if not moved:
            break
    return t


def thresholds_for_policy(
    policy: str, y_val: np.ndarray, p_val: np.ndarray, at_least_one: bool = True
) -> np.ndarray:
    """(C,) decision thresholds of ``policy`` (``config.THRESHOLD_POLICIES``), from validation."""
    n_classes = np.asarray(y_val).shape[1]
    if policy == "fixed":
        return np.full(n_classes, 0.5)
    if policy == "f1":
        return tune_thresholds(y_val, p_val)
    if policy == "exact_match":
        return tune_exact_match_thresholds(y_val, p_val, at_least_one=at_least_one)
    raise ValueError(f"threshold_policy must be one of {', '.join(THRESHOLD_POLICIES)}")


# --- calibration ------------------------------------------------------------------------------

ECE_BINS = 10


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Macro Brier score: the mean over classes of each class's mean squared error."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean(np.mean((p - y) ** 2, axis=0)))


def _bin_ids(p: np.ndarray, bins: int) -> np.ndarray:
    # the binning of sklearn.calibration.calibration_curve(strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], p)


def reliability_bins(
    y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class and equal-width bin: (count, mean predicted probability, observed frequency),
    each (C, bins); the means are NaN in an empty bin."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n_classes = y.shape[1]
    count = np.zeros((n_classes, bins))
    conf = np.full((n_classes, bins), np.nan)
    freq = np.full((n_classes, bins), np.nan)
    for c in range(n_classes):
        ids = _bin_ids(p[:, c], bins)
        n = np.bincount(ids, minlength=bins).astype(np.float64)
        sp = np.bincount(ids, weights=p[:, c], minlength=bins)
        sy = np.bincount(ids, weights=y[:, c], minlength=bins)
        count[c] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            conf[c] = np.where(n > 0, sp / n, np.nan)
            freq[c] = np.where(n > 0, sy / n, np.nan)
    return count, conf, freq


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Macro ECE: per class, sum over equal-width bins of (bin share) x |frequency - confidence|,
    averaged over classes."""
    if not len(np.asarray(y)):
        return float("nan")
    count, conf, freq = reliability_bins(y, p, bins)
    gap = np.where(count > 0, np.abs(np.nan_to_num(freq) - np.nan_to_num(conf)), 0.0)
    per_class = (count * gap).sum(axis=1) / count.sum(axis=1)
    return float(per_class.mean())


def fit_temperature(y: np.ndarray, logits: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the one T > 0 minimizing the BCE of
    ``sigmoid(logits / T)`` on (validation) data, by bounded search over log T."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        # BCE with logits, stable: max(s, 0) - s*y + log(1 + exp(-|s|))
        return float(np.mean(np.maximum(s, 0) - s * y + np.log1p(np.exp(-np.abs(s)))))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


# --- subgroups (PTB-XL ``sex``: 0 male, 1 female; ``age`` in years, 300 = over 89) ------------

SUBGROUPS: tuple[str, ...] = (
    "sex_male", "sex_female", "age_lt40", "age_40_59", "age_60_79", "age_ge80",
)  # fmt: skip
SUBGROUP_MIN_RECORDS = 20
SUBGROUP_MIN_METRIC = "subgroup_min_macro_auc"


def subgroup_masks(sex: np.ndarray, age: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean mask per :data:`SUBGROUPS` name; missing sex or age belongs to no group."""
    sex = np.asarray(sex, dtype=np.float64)
    age = np.asarray(age, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {
            "sex_male": sex == 0,
            "sex_female": sex == 1,
            "age_lt40": age < 40,
            "age_40_59": (age >= 40) & (age < 60),
            "age_60_79": (age >= 60) & (age < 80),
            "age_ge80": age >= 80,  # PTB-XL's 300 (over 89) included
        }


def subgroup_rows(
    y: np.ndarray, p: np.ndarray, sex: np.ndarray, age: np.ndarray
) -> list[tuple[str, int, float, bool]]:
    """(subgroup, records, macro AUROC, eligible) per :data:`SUBGROUPS` name; eligible: at
    least :data:`SUBGROUP_MIN_RECORDS` records and both label values of every class."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    rows = []
    for name, mask in subgroup_masks(sex, age).items():
        n = int(mask.sum())
        auc = macro_auc(y[mask], p[mask]) if n else float("nan")
        pos = y[mask].sum(axis=0)
        eligible = n >= SUBGROUP_MIN_RECORDS and bool(np.all((pos > 0) & (pos < n)))
        rows.append((name, n, auc, eligible))
    return rows


def subgroup_report(
    y: np.ndarray, p: np.ndarray, sex: np.ndarray, age: np.ndarray, prefix: str
) -> dict[str, float]:
    """``<prefix>_macro_auc_<group>`` and ``<prefix>_n_<group>`` for every subgroup, and
    ``<prefix>_subgroup_min_macro_auc``: the lowest macro AUROC over the eligible groups (see
    :func:`subgroup_rows`; NaN if none is)."""
    out: dict[str, float] = {}
    eligible = []
    for name, n, auc, ok in subgroup_rows(y, p, sex, age):
        out[f"{prefix}_macro_auc_{name}"] = auc
        out[f"{prefix}_n_{name}"] = float(n)
        if ok:
            eligible.append(auc)
    out[f"{prefix}_{SUBGROUP_MIN_METRIC}"] = min(eligible) if eligible else float("nan")
    return out


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
    at_least_one: bool = False,
) -> dict[str, float]:
    """All end-of-run metrics for one split, keyed ``<prefix>_<metric>`` (DESIGN.md §4 names):
    AUROC (macro, per class, bootstrap CI), decisions at ``thresholds`` (F1, exact-match,
    Hamming; ``at_least_one`` as in :func:`apply_thresholds`), calibration (Brier, ECE)."""
    aucs = auc_per_class(y, p)
    out = {
        f"{prefix}_macro_auc": macro_auc(y, p),
        f"{prefix}_macro_f1": macro_f1(y, p, thresholds, at_least_one),
        f"{prefix}_exact_match_accuracy": exact_match_accuracy(y, p, thresholds, at_least_one),
        f"{prefix}_hamming_accuracy": hamming_accuracy(y, p, thresholds, at_least_one),
        f"{prefix}_brier": brier_score(y, p),
        f"{prefix}_ece": expected_calibration_error(y, p),
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
