"""Scores of the 40 binary attributes against their labels, and the decision rule fitted
on the validation split (docs/architecture.md, "Evaluation").

Every function takes (N, 40) arrays, one column per attribute, and returns one value per
attribute; NaN where a measure is undefined (an attribute whose labels, or decisions, are
all one class).

- ``f1``, ``average_precision`` and ``expected_calibration_error`` describe one set of scores,
  and ``reliability`` bins its probabilities for a reliability diagram;
- ``fit_temperature`` and ``fit_thresholds`` make the decision rule: a temperature T_j per
  attribute (calibration: p_j = sigmoid(s_j / T_j), fitted by likelihood) and a threshold on
  that probability (by default the one that maximises balanced accuracy, since 33 of CelebA's
  40 attributes are imbalanced and a fixed 0.5 favours the larger class);
- ``worst_group_accuracy``: one attribute's accuracy within each group formed by its label and
  another attribute's (Blond_Hair x Male is the standard case of CelebA's bias);
- ``DecisionRule``: a temperature and a threshold per attribute, as one value that the
  evaluation fits and that prediction, batch inference and the export apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.config import THRESHOLD_RULES

__all__ = ["THRESHOLD_RULES", "DecisionRule", "WORST_GROUP_PAIRS", "sigmoid", "balanced_accuracy", "f1", "average_precision",
           "expected_calibration_error", "reliability", "fit_temperature", "fit_thresholds", "worst_group_accuracy"]

WORST_GROUP_PAIRS = (("Blond_Hair", "Male"),)  # (attribute, the attribute whose label forms the groups)
ECE_BINS = 15


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def balanced_accuracy(decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of the true-positive and true-negative rates."""
    d, y = decisions.astype(bool), labels.astype(bool)
    pos, neg = y.sum(0), (~y).sum(0)
    tpr = (d & y).sum(0) / np.maximum(pos, 1)
    tnr = (~d & ~y).sum(0) / np.maximum(neg, 1)
    return np.where((pos > 0) & (neg > 0), (tpr + tnr) / 2, np.nan)


def f1(decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """2 TP / (2 TP + FP + FN); undefined with neither a positive label nor a positive decision."""
    d, y = decisions.astype(bool), labels.astype(bool)
    tp, fp, fn = (d & y).sum(0), (d & ~y).sum(0), (~d & y).sum(0)
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Area under the precision-recall curve as a step function: the sum over the distinct
    score thresholds, highest first, of precision times the recall gained there (tied scores
    form one threshold). Undefined for an attribute with no positive label."""
    out = np.full(scores.shape[1], np.nan)
    for j in range(scores.shape[1]):
        y = labels[:, j].astype(bool)
        if not y.any():
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        s, hits = scores[order, j], y[order]
        last_of_tie = np.r_[s[1:] != s[:-1], True]  # the end of each run of equal scores
        tp = np.cumsum(hits)[last_of_tie]
        seen = np.flatnonzero(last_of_tie) + 1
        recall_gain = np.diff(np.r_[0, tp]) / y.sum()
        out[j] = float((tp / seen * recall_gain).sum())
    return out


def _bin_index(probs: np.ndarray, bins: int) -> np.ndarray:
    """The equal-width probability bin, 0..bins-1, of each probability."""
    return np.minimum((probs * bins).astype(int), bins - 1)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Sum over equal-width probability bins of (share of rows in the bin) x |positive rate
    in the bin - mean probability in the bin|."""
    n = probs.shape[0]
    index = _bin_index(probs, bins)
    out = np.zeros(probs.shape[1])
    y = labels.astype(float)
    for b in range(bins):
        inside = index == b
        count = inside.sum(0)
        gap = np.abs((y * inside).sum(0) - (probs * inside).sum(0))  # count x |rate - confidence|
        out += np.where(count > 0, gap, 0.0) / max(n, 1)
    return out if n else np.full(probs.shape[1], np.nan)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """A reliability diagram's data, every attribute's probabilities pooled: per equal-width
    bin, how many probabilities fell in it, their mean and the share of them whose label is
    positive (``None`` for an empty bin). A calibrated model has the two equal in every bin."""
    index, p, y = _bin_index(probs, bins).ravel(), probs.ravel(), labels.astype(float).ravel()
    count = np.bincount(index, minlength=bins)
    total_p, total_y = np.bincount(index, p, minlength=bins), np.bincount(index, y, minlength=bins)
    shown = count > 0
    return {"count": count.tolist(),
            "mean_probability": [round(float(v), 5) if k else None for v, k in zip(total_p / np.maximum(count, 1), shown)],
            "positive_rate": [round(float(v), 5) if k else None for v, k in zip(total_y / np.maximum(count, 1), shown)]}


def fit_temperature(scores: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> np.ndarray:
    """Per attribute, the T in [low, high] that minimises the mean negative log-likelihood of
    sigmoid(s / T): a grid over log T, then golden-section search around its best point.
    1 (no change) for an attribute whose labels are all one class."""
    y = labels.astype(float)

    def nll(t: np.ndarray) -> np.ndarray:  # one temperature per attribute -> one loss per attribute
        z = scores / t
        return (np.logaddexp(0.0, z) - y * z).mean(0)

    grid = np.geomspace(low, high, 41)
    losses = np.stack([nll(np.full(scores.shape[1], t)) for t in grid])
    best = losses.argmin(0)
    lo = np.log(grid[np.maximum(best - 1, 0)])
    hi = np.log(grid[np.minimum(best + 1, len(grid) - 1)])
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(30):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        la, lb = nll(np.exp(a)), nll(np.exp(b))
        hi, lo = np.where(la < lb, b, hi), np.where(la < lb, lo, a)
    t = np.exp((lo + hi) / 2)
    constant = (labels.astype(bool).all(0)) | (~labels.astype(bool)).all(0)
    return np.where(constant, 1.0, t)


def fit_thresholds(probs: np.ndarray, labels: np.ndarray, rule: str = "balanced_accuracy") -> np.ndarray:
    """Per attribute, the probability threshold t (decide positive when p > t) that maximises
    ``rule`` on these rows: each cut between two distinct probabilities is tried, t is the
    midpoint of the cut; 0.5 for an attribute whose labels are all one class. Among equally
    good cuts, the one nearest 0.5."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    out = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        y = labels[:, j].astype(bool)
        pos, neg = y.sum(), (~y).sum()
        if pos == 0 or neg == 0:
            continue
        order = np.argsort(-probs[:, j], kind="stable")
        p, hits = probs[order, j], y[order]
        cut = np.r_[True, p[1:] != p[:-1], True]  # k rows decided positive: a cut only between distinct values
        tp = np.r_[0, np.cumsum(hits)]
        fp = np.r_[0, np.cumsum(~hits)]
        if rule == "balanced_accuracy":
            score = (tp / pos + (neg - fp) / neg) / 2
        else:
            score = (tp + neg - fp) / (pos + neg)
        k = np.flatnonzero(cut)
        edges = np.r_[1.0, p, 0.0]  # the probabilities on either side of cut k: edges[k] > t >= edges[k + 1]
        t = np.clip((edges[k] + edges[k + 1]) / 2, 0.0, 1.0)
        best = score[k] >= score[k].max() - 1e-12
        out[j] = t[best][np.abs(t[best] - 0.5).argmin()]
    return out


def worst_group_accuracy(decisions: np.ndarray, labels: np.ndarray, attribute: int, group: int) -> dict:
    """Accuracy of ``attribute``'s decisions within each of the four groups formed by its
    label and ``group``'s label (e.g. blond / not blond x male / not male), and the lowest
    over the groups that have rows."""
    d, y, g = decisions[:, attribute].astype(bool), labels[:, attribute].astype(bool), labels[:, group].astype(bool)
    groups = {}
    for label in (True, False):
        for member in (True, False):
            rows = (y == label) & (g == member)
            groups[f"{int(label)}{int(member)}"] = {"n": int(rows.sum()),
                                                     "accuracy": float((d[rows] == y[rows]).mean()) if rows.any()
                                                     else None}
    present = [v["accuracy"] for v in groups.values() if v["accuracy"] is not None]
    return {"groups": groups, "worst": min(present) if present else None}


@dataclass(frozen=True)
class DecisionRule:
    """Scores to probabilities to decisions, per attribute j: p_j = sigmoid(s_j / T_j), and
    positive when p_j > t_j. ``fixed()`` is T = 1, t = 0.5: the paper's score > 0 rule."""

    temperature: np.ndarray  # (40,) T_j
    thresholds: np.ndarray  # (40,) t_j, on the calibrated probability
    rule: str = "fixed"  # "fixed", or the THRESHOLD_RULES entry the thresholds maximise

    @classmethod
    def fixed(cls) -> "DecisionRule":
        return cls(np.ones(NUM_ATTRIBUTES), np.full(NUM_ATTRIBUTES, 0.5))

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, rule: str = "balanced_accuracy") -> "DecisionRule":
        """Fit on validation rows: the temperature first, then the thresholds on the
        probabilities it calibrates."""
        temperature = fit_temperature(scores, labels)
        return cls(temperature, fit_thresholds(sigmoid(scores / temperature), labels, rule), rule)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        return sigmoid(scores / self.temperature)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities > self.thresholds
