"""The per-attribute measures and the fitted decision rule (paw_ray.metrics), on arrays whose
answers are known by hand or by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from paw_ray import metrics as M


def _col(*values):
    return np.asarray(values, dtype=float)[:, None]


def test_f1_counts_hits_misses_and_false_alarms():
    decisions = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]], bool)
    got = M.f1(decisions, labels)
    assert got[0] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # TP 1, FP 1, FN 1
    assert got[1] == pytest.approx(2 / 3)  # TP 1, FP 1, FN 0
    assert np.isnan(got[2]), "no positive label and no positive decision: undefined"


def test_average_precision_by_hand_and_with_ties():
    assert M.average_precision(_col(0.9, 0.8, 0.7, 0.1), _col(1, 0, 1, 0))[0] == pytest.approx((1 + 2 / 3) / 2)
    assert M.average_precision(_col(0.9, 0.8, 0.7), _col(1, 1, 0))[0] == pytest.approx(1.0)
    # a tie of a positive and a negative is one threshold: precision 1/2 there, not 1 then 1/2
    assert M.average_precision(_col(0.5, 0.5), _col(1, 0))[0] == pytest.approx(0.5)
    assert M.average_precision(_col(0.5, 0.5), _col(0, 1))[0] == pytest.approx(0.5)
    assert np.isnan(M.average_precision(_col(0.3, 0.2), _col(0, 0))[0])


def test_calibration_error_is_zero_when_each_bin_hits_its_confidence():
    probs = np.repeat([0.2, 0.8], 10)[:, None]
    labels = np.r_[np.arange(10) < 2, np.arange(10) < 8][:, None]
    assert M.expected_calibration_error(probs, labels)[0] == pytest.approx(0.0)
    overconfident = np.full((10, 1), 0.95)
    assert M.expected_calibration_error(overconfident, labels[:10])[0] == pytest.approx(0.95 - 0.2)


def test_temperature_undoes_overconfidence_and_lowers_the_calibration_error():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (20000, 3))
    labels = rng.random(true.shape) < M.sigmoid(true)
    scores = true * np.array([3.0, 1.0, 0.5])  # over-, well- and under-confident
    t = M.fit_temperature(scores, labels)
    np.testing.assert_allclose(t, [3.0, 1.0, 0.5], rtol=0.08)
    before = M.expected_calibration_error(M.sigmoid(scores), labels)
    after = M.expected_calibration_error(M.sigmoid(scores / t), labels)
    assert after[0] < before[0] / 3 and after[2] < before[2] / 3
    assert M.fit_temperature(scores[:, :1], np.zeros((20000, 1), bool))[0] == 1.0, "one class: left alone"


def _brute_best(probs, labels, rule):
    """Every threshold between observed values, scored directly."""
    values = np.unique(np.r_[0.0, probs, 1.0])
    candidates = (values[1:] + values[:-1]) / 2
    score = M.balanced_accuracy if rule == "balanced_accuracy" else (lambda d, y: (d == y).mean(0))
    return max(float(score((probs > t)[:, None], labels[:, None])[0]) for t in candidates)


@pytest.mark.parametrize("rule", M.THRESHOLD_RULES)
def test_fitted_threshold_is_the_best_cut_and_beats_one_half_on_imbalanced_labels(rule):
    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.08  # 1:11, like CelebA's rarer attributes
    probs = np.clip(0.1 + 0.25 * labels + rng.normal(0, 0.12, 400), 0, 1)  # every score under 0.5-ish
    t = M.fit_thresholds(probs[:, None], labels[:, None], rule)[0]
    score = M.balanced_accuracy if rule == "balanced_accuracy" else (lambda d, y: (d == y).mean(0))
    got = float(score((probs > t)[:, None], labels[:, None])[0])
    assert got == pytest.approx(_brute_best(probs, labels, rule))
    if rule == "balanced_accuracy":
        assert got > float(M.balanced_accuracy((probs > 0.5)[:, None], labels[:, None])[0]) + 0.2


def test_threshold_rule_is_checked_and_one_class_keeps_one_half():
    with pytest.raises(ValueError, match="threshold rule"):
        M.fit_thresholds(np.zeros((2, 1)), np.zeros((2, 1)), "f1")
    assert M.fit_thresholds(np.array([[0.9], [0.1]]), np.ones((2, 1), bool))[0] == 0.5


def test_worst_group_accuracy_names_each_group_and_the_lowest():
    # attribute 0 (say Blond_Hair) and attribute 1 (say Male): blond men are the rare, hard group
    labels = np.array([[1, 1], [1, 0], [1, 0], [0, 1], [0, 1], [0, 0]], bool)
    decisions = np.array([[0, 0], [1, 0], [1, 0], [0, 0], [1, 0], [0, 0]], bool)
    got = M.worst_group_accuracy(decisions, labels, attribute=0, group=1)
    assert got["groups"]["11"] == {"n": 1, "accuracy": 0.0}
    assert got["groups"]["10"] == {"n": 2, "accuracy": 1.0}
    assert got["groups"]["01"] == {"n": 2, "accuracy": 0.5}
    assert got["worst"] == 0.0
    empty = M.worst_group_accuracy(decisions[1:3], labels[1:3], attribute=0, group=1)
    assert empty["groups"]["11"] == {"n": 0, "accuracy": None} and empty["worst"] == 1.0


def test_a_decision_rule_fits_the_temperature_then_the_thresholds_on_its_probabilities():
    rng = np.random.default_rng(2)
    true = rng.normal(-1.5, 2, (3000, 40))
    labels = rng.random(true.shape) < M.sigmoid(true)
    scores = 2.5 * true  # over-confident
    rule = M.DecisionRule.fit(scores, labels, "accuracy")
    np.testing.assert_array_equal(rule.temperature, M.fit_temperature(scores, labels))
    np.testing.assert_array_equal(rule.thresholds, M.fit_thresholds(M.sigmoid(scores / rule.temperature), labels,
                                                                    "accuracy"))
    assert rule.rule == "accuracy"
    probs = rule.probabilities(scores)
    np.testing.assert_allclose(probs, M.sigmoid(scores / rule.temperature))
    np.testing.assert_array_equal(rule.decide(probs), probs > rule.thresholds)
    fixed = M.DecisionRule.fixed()
    assert fixed.rule == "fixed"
    np.testing.assert_array_equal(fixed.decide(fixed.probabilities(scores)), scores > 0)


def test_reliability_bins_pool_the_attributes_and_agree_with_the_calibration_error():
    rng = np.random.default_rng(3)
    probs = rng.random((2000, 4))
    labels = rng.random(probs.shape) < probs ** 2  # over-confident: positive less often than said
    got = M.reliability(probs, labels, bins=10)
    assert sum(got["count"]) == probs.size and len(got["mean_probability"]) == 10
    inside = (probs >= 0.3) & (probs < 0.4)
    assert got["count"][3] == inside.sum()
    assert got["mean_probability"][3] == pytest.approx(probs[inside].mean(), abs=1e-5)
    assert got["positive_rate"][3] == pytest.approx(labels[inside].mean(), abs=1e-5)
    pooled_ece = sum(c * abs(r - m) for c, r, m in zip(got["count"], got["positive_rate"], got["mean_probability"]))
    assert pooled_ece / probs.size == pytest.approx(M.expected_calibration_error(probs.reshape(-1, 1),
                                                                                 labels.reshape(-1, 1), 10)[0], abs=1e-4)
    empty = M.reliability(np.full((3, 1), 0.95), np.ones((3, 1), bool), bins=10)
    assert empty["count"][:9] == [0] * 9 and empty["mean_probability"][0] is None and empty["positive_rate"][9] == 1.0
