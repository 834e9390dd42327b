"""The evaluation metrics behind results.json: accuracy, balanced accuracy, majority
baseline, pointing accuracy and its chance level."""

from __future__ import annotations

import numpy as np
import pytest

from paw_ray.attributes import ATTRIBUTES, LOCAL_MASK
from paw_ray.train.stages.evaluate import (RESULT_ROWS, SCORED_ROWS, accuracy_tables, decision_tables, format_decisions,
                                           format_table, pointing_accuracy)


def test_accuracy_and_balanced_accuracy():
    labels = np.zeros((10, 40), bool)
    labels[:3, 0] = True  # attribute 0: 3 of 10 positive; the others never positive
    scores = {r: np.full((10, 40), -1.0) for r in RESULT_ROWS if r != "majority"}
    scores["paw"][:3, 0] = 1.0  # perfect on attribute 0
    scores["whole"][:, 0] = 1.0  # always positive on attribute 0
    acc, bal = accuracy_tables(scores, labels, train_positive_rate=np.full(40, 0.1))
    assert acc["paw"][0] == 1.0 and bal["paw"][0] == 1.0
    assert acc["whole"][0] == pytest.approx(0.3) and bal["whole"][0] == pytest.approx(0.5)
    assert acc["majority"][0] == pytest.approx(0.7) and bal["majority"][0] == pytest.approx(0.5)
    assert np.isnan(bal["paw"][1]), "undefined where the test labels are all one class"
    assert acc["paw"][1] == 1.0


def test_majority_uses_the_training_split():
    labels = np.ones((4, 40), bool)
    scores = {r: np.zeros((4, 40)) for r in RESULT_ROWS if r != "majority"}
    acc, _ = accuracy_tables(scores, labels, train_positive_rate=np.full(40, 0.9))
    assert (acc["majority"] == 1.0).all()
    acc, _ = accuracy_tables(scores, labels, train_positive_rate=np.full(40, 0.2))
    assert (acc["majority"] == 0.0).all()


def test_pointing_accuracy_counts_centres_inside_boxes():
    n = 4
    boxes = np.zeros((n, 40, 4), np.float32)
    local = [j for j in range(40) if LOCAL_MASK[j]]
    boxes[:, local] = [0.25, 0.25, 0.75, 0.5]  # area 0.125
    centres = np.full((n, 40, 2), 0.5, np.float32)
    centres[0, :, 1] = 0.9  # image 0 points below every box
    out = pointing_accuracy(centres, boxes)
    assert set(out["pointing_accuracy"]) == {ATTRIBUTES[j] for j in local}
    assert out["mean"] == pytest.approx(0.75)
    assert out["chance_mean"] == pytest.approx(0.125)


def test_pointing_game_counts_only_images_that_show_the_attribute():
    boxes = np.zeros((4, 40, 4), np.float32)
    local = [j for j in range(40) if LOCAL_MASK[j]]
    boxes[:, local] = [0.25, 0.25, 0.75, 0.5]
    centres = np.full((4, 40, 2), 0.5, np.float32)
    centres[2:, :, 1] = 0.9  # images 2 and 3 point outside every box
    present = np.zeros((4, 40), bool)
    present[:2] = True  # ... and do not show any attribute
    assert pointing_accuracy(centres, boxes)["mean"] == pytest.approx(0.5)
    game = pointing_accuracy(centres, boxes, window=0.25, present=present)
    assert game["mean"] == pytest.approx(1.0) and game["window_hit_mean"] == pytest.approx(1.0)
    present[:, local[0]] = False  # an attribute no test image shows is left out, not scored 0
    game = pointing_accuracy(centres, boxes, present=present)
    assert ATTRIBUTES[local[0]] not in game["pointing_accuracy"] and game["mean"] == pytest.approx(1.0)


def test_window_hit_uses_the_clamped_crop_and_its_chance_is_the_monte_carlo_rate():
    boxes = np.zeros((3, 40, 4), np.float32)
    local = [j for j in range(40) if LOCAL_MASK[j]]
    boxes[:, local] = [0.02, 0.02, 0.06, 0.06]  # a cue in the top-left corner, centre (0.04, 0.04)
    centres = np.array([[0.0, 0.0], [0.3, 0.3], [0.2, 0.2]], np.float32)[:, None].repeat(40, 1)
    out = pointing_accuracy(centres, boxes, window=0.25)
    # the first window is clamped to start at (0, 0) and holds the cue; the others start at 0.175 and 0.075
    assert out["window_hit_mean"] == pytest.approx(1 / 3)
    assert out["mean"] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    random_centres = rng.random((20000, 40, 2)).astype(np.float32)
    box_rows = np.repeat(boxes[:1], 20000, 0)
    rate = pointing_accuracy(random_centres, box_rows, window=0.25)["window_hit_mean"]
    assert out["window_chance_mean"] == pytest.approx(rate, abs=0.01)


def test_markdown_table_layout():
    results = {"preset": "smoke", "data": "x", "n_test": 3,
               "accuracy": {r: [0.5] * 40 for r in RESULT_ROWS}, "mean_accuracy": {r: 0.5 for r in RESULT_ROWS},
               "mean_balanced_accuracy": {r: 0.5 for r in RESULT_ROWS}}
    md = format_table(results)
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    assert header.count("|") == 40 + 3 and "5 o Clock Shadow" in header and "**mean**" in header
    for row in RESULT_ROWS:
        assert any(line.startswith(f"| {row} |") for line in md.splitlines())


def test_training_curves_plot_validation_only_at_the_epochs_that_validated():
    from paw_ray.eval.figures import curves_figure

    # val_every=2 over 5 epochs: validated after epochs 2, 4 and the last
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1)} for e in range(5)]
    for e, acc in ((1, 0.6), (3, 0.7), (4, 0.75)):
        history[e]["val_mean_accuracy"] = acc
    fig = curves_figure({"frl": history}, {}, "test run")
    loss_ax, val_ax = fig.axes[0], fig.axes[1]
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5]
    assert list(val_ax.lines[0].get_xdata()) == [2, 4, 5]
    assert list(val_ax.lines[0].get_ydata()) == pytest.approx([60, 70, 75])


def _split(rng, n):
    """Scores 3x overconfident and shifted negative (every attribute rarer than 1:4), so the
    fixed 0.5 rule misses most positives."""
    true = rng.normal(-1.5, 1.5, (n, 40))
    labels = rng.random((n, 40)) < 1 / (1 + np.exp(-true))
    rows = {row: 3.0 * true for row in SCORED_ROWS}
    return {**rows, "labels": labels.astype(np.int8)}


def test_decision_rule_is_fitted_on_val_and_measured_on_test():
    rng = np.random.default_rng(0)
    val, test = _split(rng, 4000), _split(rng, 4000)
    got = decision_tables(val, test, "balanced_accuracy")
    assert got["n_val"] == 4000 and got["threshold_rule"] == "balanced_accuracy"
    for row in SCORED_ROWS:
        np.testing.assert_allclose(got["temperature"][row], 3.0, rtol=0.15)
        assert got["mean_ece_calibrated"][row] < got["mean_ece"][row] / 2, "the temperature calibrates"
        bins = got["reliability"][row]
        assert sum(bins["fixed"]["count"]) == sum(bins["calibrated"]["count"]) == 4000 * 40
        assert all(0 < t < 1 for t in got["thresholds"][row])
        assert 0 < got["mean_average_precision"][row] <= 1 and 0 <= got["mean_f1"][row] <= 1
        worst = got["worst_group"][row]["Blond_Hair x Male"]
        assert set(worst["groups"]) == {"11", "10", "01", "00"} and worst["worst"] <= 1
    fixed_balanced = accuracy_tables(test, test["labels"], np.full(40, 0.3))[1]["paw"]
    assert got["tuned"]["mean_balanced_accuracy"]["paw"] > np.mean(fixed_balanced) + 0.02, \
        "the fitted threshold helps the rarer class"


def test_without_val_rows_the_rule_stays_at_one_half():
    test = _split(np.random.default_rng(1), 500)
    got = decision_tables({}, test, "accuracy")
    assert got["n_val"] == 0
    assert set(got["temperature"]["paw"]) == {1.0} and set(got["thresholds"]["paw"]) == {0.5}
    assert got["tuned"]["accuracy"]["paw"] == pytest.approx(accuracy_tables(test, test["labels"], np.zeros(40))[0]["paw"],
                                                            abs=1e-5)


def test_results_md_shows_both_rules_for_every_network():
    rng = np.random.default_rng(2)
    val, test = _split(rng, 300), _split(rng, 300)
    acc, bal = accuracy_tables(test, test["labels"], np.full(40, 0.3))
    results = {"mean_accuracy": {r: float(np.mean(acc[r])) for r in RESULT_ROWS},
               "mean_balanced_accuracy": {r: float(np.nanmean(bal[r])) for r in RESULT_ROWS},
               **decision_tables(val, test, "balanced_accuracy")}
    lines = format_decisions(results)
    assert "300 validation images" in lines[0] and "worst group Blond_Hair x Male" in lines[2]
    assert [line.split(" | ")[0] for line in lines[4:]] == [f"| {r}" for r in SCORED_ROWS]



def test_noise_free_labels_are_found_only_for_noisy_synthfaces(tmp_path):
    from paw_ray.data import synthfaces as sf
    from paw_ray.train.stages.evaluate import noise_free_labels

    ids = [sf.image_id(i) for i in range(30)]
    for noise, expect in ((0.0, False), (0.2, True)):
        out = str(tmp_path / f"n{noise}")
        sf.synthesize(n=30, size=32, seed=4, out=out, label_noise=noise, num_tasks=1)
        got = noise_free_labels(out, ids)
        assert (got is not None) == expect
        if expect:
            np.testing.assert_array_equal(got, sf.clean_labels(4, ids))


def test_noise_free_accuracy_credits_the_truth_the_noisy_labels_hide():
    from paw_ray.train.stages.evaluate import format_table, noise_free_tables

    rng = np.random.default_rng(5)
    clean = rng.random((2000, 40)) < 0.3
    stored = clean ^ (rng.random(clean.shape) < 0.1)
    scores = {r: np.where(clean, 4.0, -4.0) for r in SCORED_ROWS}  # every network sees the truth
    got = noise_free_tables(scores, stored, clean, np.full(40, 0.3), 0.1)
    assert got["label_agreement"] == pytest.approx(0.9, abs=0.01)
    assert all(got["mean_accuracy"][r] == 1.0 for r in SCORED_ROWS)
    assert got["mean_accuracy"]["majority"] == pytest.approx(0.7, abs=0.01)
    acc, bal = accuracy_tables(scores, stored, np.full(40, 0.3))
    results = {"preset": "smoke", "data": "synthfaces", "n_test": 2000, "accuracy": {r: acc[r] for r in RESULT_ROWS},
               "mean_accuracy": {r: float(np.mean(acc[r])) for r in RESULT_ROWS},
               "mean_balanced_accuracy": {r: float(np.nanmean(bal[r])) for r in RESULT_ROWS}, "noise_free": got}
    assert results["mean_accuracy"]["paw"] == pytest.approx(0.9, abs=0.01), "the stored labels cap it"
    assert "Against the noise-free labels (SynthFaces, label noise 0.1" in format_table(results)
