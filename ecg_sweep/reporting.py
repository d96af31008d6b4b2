"""Figures and tables logged as MLflow artifacts (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: never open a window, never need a display

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from ecg_sweep.metrics import (
    ECE_BINS,
    auc_per_class,
    expected_calibration_error,
    f1_per_class,
    reliability_bins,
    subgroup_rows,
)

__all__ = ["roc_figure", "per_class_table", "reliability_figure", "subgroup_table"]


def _roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="stable")
    y = y[order]
    tps = np.concatenate([[0], np.cumsum(y)])
    fps = np.concatenate([[0], np.cumsum(1 - y)])
    return fps / max(fps[-1], 1), tps / max(tps[-1], 1)


def roc_figure(y: np.ndarray, p: np.ndarray, classes: tuple[str, ...], title: str) -> Figure:
    """One ROC curve per class with its AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    aucs = auc_per_class(y, p)
    for c, name in enumerate(classes):
        if not np.isfinite(aucs[c]):
            continue
        fpr, tpr = _roc_curve(y[:, c], p[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUROC {aucs[c]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def per_class_table(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, classes: tuple[str, ...]
) -> pd.DataFrame:
    """class, positives, AUROC, F1/precision/recall at the validation-tuned threshold."""
    pred = (p >= thresholds).astype(np.float64)
    tp = (pred * y).sum(axis=0)
    fp = (pred * (1 - y)).sum(axis=0)
    fn = ((1 - pred) * y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    return pd.DataFrame(
        {
            "class": list(classes),
            "positives": y.sum(axis=0).astype(int),
            "auroc": auc_per_class(y, p).round(4),
            "f1": f1_per_class(y, pred).round(4),
            "precision": precision.round(4),
            "recall": recall.round(4),
            "threshold": np.asarray(thresholds).round(3),
        }
    )


def reliability_figure(
    y: np.ndarray, p: np.ndarray, classes: tuple[str, ...], title: str, bins: int = ECE_BINS
) -> Figure:
    """Reliability diagram: observed frequency against mean predicted probability per
    equal-width bin, one line per class (ECE in the legend), the diagonal = perfect calibration."""
    count, conf, freq = reliability_bins(y, p, bins)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    for c, name in enumerate(classes):
        ok = count[c] > 0
        ece = expected_calibration_error(np.asarray(y)[:, [c]], np.asarray(p)[:, [c]], bins)
        ax.plot(conf[c][ok], freq[c][ok], marker="o", ms=3, lw=1.2, label=f"{name} (ECE {ece:.3f})")
    ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability",
        ylabel="observed frequency", title=f"{title}\nmacro ECE {expected_calibration_error(y, p, bins):.3f}",
    )  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def subgroup_table(y: np.ndarray, p: np.ndarray, sex: np.ndarray, age: np.ndarray) -> pd.DataFrame:
    """subgroup, records, macro AUROC, and whether it counts towards the worst-subgroup metric
    (at least ``SUBGROUP_MIN_RECORDS`` records, both label values of every class)."""
    rows = subgroup_rows(y, p, sex, age)
    return pd.DataFrame(rows, columns=["subgroup", "records", "macro_auc", "counts_for_min"])
