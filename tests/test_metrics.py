"""Metrics against scikit-learn: AUROC with ties, F1 and accuracies, thresholds, bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ecg_sweep.metrics import (
    SUBGROUPS,
    apply_thresholds,
    auc_per_class,
    bootstrap_macro_auc_ci,
    brier_score,
    exact_match_accuracy,
    expected_calibration_error,
    fit_temperature,
    hamming_accuracy,
    macro_auc,
    macro_f1,
    majority_baseline,
    reliability_bins,
    subgroup_report,
    thresholds_for_policy,
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


# --- decision policies ---------------------------------------------------------------------------


def _multilabel(n=600, c=4, seed=1, sharp=3.0):
    """Labels with a plausible model's probabilities: logits = sharp * (signal + noise)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < np.array([0.45, 0.3, 0.25, 0.15])[:c]).astype(float)
    y[y.sum(axis=1) == 0, 0] = 1.0  # every record has a label, as labelled PTB-XL records
    z = sharp * ((2 * y - 1) * 0.8 + rng.normal(0, 1, (n, c)))
    return y, z, 1 / (1 + np.exp(-z))


def test_at_least_one_rule_adds_the_most_probable_class_only_where_none_passes():
    p = np.array([[0.2, 0.4, 0.1], [0.9, 0.6, 0.1], [0.3, 0.3, 0.31]])
    plain = apply_thresholds(p, 0.5)
    ruled = apply_thresholds(p, 0.5, at_least_one=True)
    np.testing.assert_array_equal(plain, [[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ruled, [[0, 1, 0], [1, 1, 0], [0, 0, 1]])
    y = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert exact_match_accuracy(y, p, 0.5) == pytest.approx(1 / 3)
    assert exact_match_accuracy(y, p, 0.5, at_least_one=True) == 1.0


def test_exact_match_policy_beats_per_class_f1_on_subset_accuracy():
    y, _, p = _multilabel()
    f1_t = thresholds_for_policy("f1", y, p)
    em_t = thresholds_for_policy("exact_match", y, p)
    np.testing.assert_array_equal(f1_t, tune_thresholds(y, p))
    np.testing.assert_array_equal(thresholds_for_policy("fixed", y, p), np.full(4, 0.5))
    # F1 thresholds sit low (recall pays); subset accuracy wants them higher
    assert exact_match_accuracy(y, p, em_t, True) > exact_match_accuracy(y, p, f1_t, True) + 0.02
    with pytest.raises(ValueError, match="threshold_policy"):
        thresholds_for_policy("youden", y, p)


# --- calibration: Brier and ECE against scikit-learn ---------------------------------------------


def test_brier_and_ece_match_scikit_learn():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    y, _, p = _multilabel(sharp=2.0)
    c = y.shape[1]
    assert brier_score(y, p) == pytest.approx(
        np.mean([brier_score_loss(y[:, k], p[:, k]) for k in range(c)])
    )
    per_class = []
    for k in range(c):
        freq, conf = calibration_curve(y[:, k], p[:, k], n_bins=10, strategy="uniform")
        counts, _ = np.histogram(p[:, k], bins=np.linspace(0, 1, 11))
        counts = counts[counts > 0]
        per_class.append(np.sum(counts / len(p) * np.abs(freq - conf)))
    assert expected_calibration_error(y, p) == pytest.approx(np.mean(per_class))
    count, conf_bins, freq_bins = reliability_bins(y, p)
    assert count.sum() == p.size and np.isnan(freq_bins[count == 0]).all()


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (4000, 4))
    p = 1 / (1 + np.exp(-z))
    y = (rng.random(z.shape) < p).astype(float)  # sigmoid(z) is calibrated by construction
    hot = 3.0 * z  # an overconfident model: logits 3x too large
    t = fit_temperature(y, hot)
    assert t == pytest.approx(3.0, rel=0.15)
    fixed = 1 / (1 + np.exp(-hot / t))
    assert (
        expected_calibration_error(y, fixed)
        < expected_calibration_error(y, 1 / (1 + np.exp(-hot))) / 2
    )
    assert macro_auc(y, fixed) == pytest.approx(macro_auc(y, p))  # ranks unchanged


# --- subgroups ------------------------------------------------------------------------------------


def test_subgroups_by_sex_and_age_band_and_the_worst_eligible_one():
    y, _, p = _multilabel(n=400)
    rng = np.random.default_rng(5)
    sex = rng.integers(0, 2, 400).astype(float)
    age = rng.choice([25.0, 45.0, 65.0, 85.0, 300.0], 400)  # 300: PTB-XL's "over 89"
    sex[:7], age[:3] = np.nan, np.nan  # missing values belong to no group
    p_bad = p.copy()
    few = np.flatnonzero(age == 25.0)[:15]
    age[np.flatnonzero(age == 25.0)[15:]] = 45.0  # age_lt40: 15 records, under the minimum
    p_bad[few] = rng.random((len(few), 4))  # ... and random scores: excluded from the minimum
    women = sex == 1
    p_bad[women] = 0.5 * p_bad[women] + 0.5 * rng.random((int(women.sum()), 4))
    m = subgroup_report(y, p_bad, sex, age, "test")
    assert m["test_n_sex_male"] + m["test_n_sex_female"] == 400 - 7
    assert m["test_n_age_lt40"] == 15 and m["test_n_age_ge80"] == np.sum(age >= 80)
    for g in ("sex_female", "age_60_79"):
        mask = (sex == 1) if g == "sex_female" else (age >= 60) & (age < 80)
        assert m[f"test_macro_auc_{g}"] == pytest.approx(macro_auc(y[mask], p_bad[mask]))
    eligible = [m[f"test_macro_auc_{g}"] for g in SUBGROUPS if g != "age_lt40"]
    assert m["test_subgroup_min_macro_auc"] == pytest.approx(min(eligible))
    assert m["test_subgroup_min_macro_auc"] == pytest.approx(m["test_macro_auc_sex_female"])
    assert m["test_macro_auc_age_lt40"] < m["test_subgroup_min_macro_auc"]
