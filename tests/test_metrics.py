"""Metrics against scikit-learn: AUROC with ties, F1 and accuracies, thresholds, bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ecg_sweep.metrics import (
    auc_per_class,
    bootstrap_macro_auc_ci,
    exact_match_accuracy,
    hamming_accuracy,
    macro_auc,
    macro_f1,
    majority_baseline,
    tune_thresholds,
)


def _toy(n=400, c=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(float)
    p = np.clip(rng.random((n, c)) * 0.6 + y * 0.3, 0, 1).round(2)  # ties on purpose
    return y, p


def test_auc_matches_sklearn_with_ties():
    y, p = _toy()
    np.testing.assert_allclose(
        auc_per_class(y, p), [roc_auc_score(y[:, c], p[:, c]) for c in range(5)]
    )
    y[:, 2] = 0  # a class never positive is left out of the macro mean
    assert np.isnan(auc_per_class(y, p)[2])
    assert macro_auc(y, p) == pytest.approx(
        np.mean([roc_auc_score(y[:, c], p[:, c]) for c in (0, 1, 3, 4)])
    )


def test_f1_accuracies_and_thresholds():
    y, p = _toy()
    t = tune_thresholds(y, p)
    assert macro_f1(y, p, t) >= macro_f1(y, p, 0.5)
    pred = (p >= t).astype(int)
    assert macro_f1(y, p, t) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert exact_match_accuracy(y, y, 0.5) == 1.0
    assert hamming_accuracy(y, 1 - y, 0.5) == 0.0
    assert exact_match_accuracy(y, p, t) <= hamming_accuracy(y, p, t)


def test_bootstrap_ci_brackets_the_estimate():
    y, p = _toy(n=300)
    lo, hi = bootstrap_macro_auc_ci(y, p, n=300, seed=1)
    assert lo < macro_auc(y, p) < hi
    assert hi - lo < 0.15
    assert bootstrap_macro_auc_ci(y, p, n=300, seed=1) == (lo, hi)  # seeded


def test_majority_baseline_predicts_the_most_frequent_label_set():
    y_train = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=float)
    y_test = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=float)
    base = majority_baseline(y_train, y_test)
    assert base["test_exact_match_accuracy"] == pytest.approx(0.5)
    assert base["test_macro_f1"] == pytest.approx(
        f1_score(y_test, np.tile([1, 0, 0], (4, 1)), average="macro", zero_division=0)
    )
    assert base["test_macro_auc"] == 0.5
