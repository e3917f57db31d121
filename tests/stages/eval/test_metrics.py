"""Metrics: hand-computed detection mAP cases and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from aamflow.stages.eval import metrics

sk = pytest.importorskip("sklearn.metrics")

GT = [("a", 0.0, 10.0, 0), ("a", 20.0, 30.0, 1), ("b", 5.0, 15.0, 0)]


def _perfect(gt):
    return [(v, s, e, c, 0.9) for v, s, e, c in gt]


# ----------------------------------------------------------------------------- tad_map


def test_tad_perfect_detections_score_one():
    out = metrics.tad_map(_perfect(GT), GT)
    assert out["map"] == {"0.3": 1.0, "0.4": 1.0, "0.5": 1.0, "0.6": 1.0, "0.7": 1.0}
    assert out["avg"] == 1.0
    assert set(out["per_class"]) == {0, 1}


def test_tad_shifted_detection_fails_only_strict_thresholds():
    # pred [0, 10] vs gt [2, 12]: overlap 8, union 12 -> tIoU 0.667, a hit below 0.7 only.
    out = metrics.tad_map([("a", 0.0, 10.0, 0, 0.9)], [("a", 2.0, 12.0, 0)])
    assert out["map"] == {"0.3": 1.0, "0.4": 1.0, "0.5": 1.0, "0.6": 1.0, "0.7": 0.0}
    assert out["avg"] == pytest.approx(0.8)


def test_tad_duplicate_is_a_false_positive():
    # Two ground truths of one class; ranked: hit, duplicate (FP), hit.
    # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1] -> AP = 1/2 * 1 + 1/2 * 2/3.
    gt = [("a", 0.0, 10.0, 0), ("b", 0.0, 10.0, 0)]
    pred = [("a", 0.0, 10.0, 0, 0.9), ("a", 0.0, 10.0, 0, 0.8), ("b", 0.0, 10.0, 0, 0.7)]
    out = metrics.tad_map(pred, gt)
    assert out["avg"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert all(v == pytest.approx(5 / 6) for v in out["map"].values())


def test_tad_missed_class_contributes_zero_and_foreign_classes_are_ignored():
    pred = [("a", 0.0, 10.0, 0, 0.9), ("b", 5.0, 15.0, 0, 0.8), ("a", 20.0, 30.0, 7, 0.99)]
    out = metrics.tad_map(pred, GT)
    assert out["per_class"][0] == [1.0] * 5
    assert out["per_class"][1] == [0.0] * 5
    assert out["avg"] == pytest.approx(0.5)
    assert 7 not in out["per_class"]


def test_tad_empty_predictions():
    out = metrics.tad_map([], GT)
    assert out["avg"] == 0.0 and set(out["map"].values()) == {0.0}


def test_tad_detection_in_a_video_without_ground_truth_is_a_false_positive():
    # Ranked FP then TP: precision [0, 1/2], recall [0, 1] -> interpolated AP 1/2.
    pred = [("zz", 0.0, 10.0, 0, 0.9), ("a", 0.0, 10.0, 0, 0.5)]
    out = metrics.tad_map(pred, [("a", 0.0, 10.0, 0)])
    assert out["avg"] == pytest.approx(0.5)


def test_tad_matches_the_best_overlapping_ground_truth():
    # The first detection overlaps gt2 best (9/11) and gt1 a little (3/17); greedy matching
    # must give it gt2 so that the second detection can still take gt1.
    gt = [("a", 0.0, 10.0, 0), ("a", 8.0, 18.0, 0)]
    pred = [("a", 7.0, 17.0, 0, 0.9), ("a", 0.0, 10.0, 0, 0.8)]
    assert metrics.tad_map(pred, gt, tious=[0.1])["avg"] == 1.0


def test_tad_accepts_columns_and_structured_arrays():
    pred = [("a", 0.0, 10.0, 0, 0.9), ("b", 2.0, 11.0, 0, 0.6), ("a", 20.0, 29.0, 1, 0.4)]
    ref = metrics.tad_map(pred, GT)
    cols = {
        "video-id": [p[0] for p in pred],
        "t-start": np.array([p[1] for p in pred]),
        "t-end": np.array([p[2] for p in pred]),
        "label": np.array([p[3] for p in pred]),
        "score": np.array([p[4] for p in pred]),
    }
    dtype = [("video_id", "U4"), ("t_start", "f8"), ("t_end", "f8"), ("label", "i8")]
    gt_arr = np.array(GT, dtype=dtype)
    assert metrics.tad_map(cols, gt_arr) == ref
    with pytest.raises(ValueError, match="score"):
        metrics.tad_map({k: v for k, v in cols.items() if k != "score"}, GT)


def test_interpolated_ap_uses_the_precision_envelope():
    # precision dips then recovers: the envelope takes the later, higher precision.
    ap = metrics.interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)


# --------------------------------------------------------------------------- ranking metrics


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_and_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 1)  # heavy ties
    assert metrics.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(y, s) == pytest.approx(
        sk.average_precision_score(y, s), abs=1e-12
    )


def test_roc_auc_is_nan_with_one_class():
    assert np.isnan(metrics.roc_auc(np.ones(4), np.arange(4.0)))


def test_frame_auc_repeats_segment_scores_like_rtfm():
    rng = np.random.default_rng(0)
    lengths = [5, 3, 8]
    scores = [np.round(rng.random(t), 1) for t in lengths]
    labels = [rng.integers(0, 2, t * 16) for t in lengths]
    expected = sk.roc_auc_score(np.concatenate(labels), np.repeat(np.concatenate(scores), 16))
    assert metrics.frame_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_frame_auc_refuses_misaligned_labels():
    with pytest.raises(ValueError, match="video 1"):
        metrics.frame_auc([np.ones(2), np.ones(3)], [np.zeros(32), np.zeros(47)])


def test_cmap_matches_sklearn_macro_ap_over_present_classes():
    rng = np.random.default_rng(1)
    y = rng.choice([0, 1, 3], size=300)  # class 2 absent: skipped
    proba = rng.random((300, 4))
    proba[np.arange(300), y] += 0.4
    onehot = np.eye(4)[y][:, [0, 1, 3]]
    expected = sk.average_precision_score(onehot, proba[:, [0, 1, 3]], average="macro")
    assert metrics.cmap(y, proba) == pytest.approx(expected, abs=1e-12)


def test_chance_cmap_is_mean_prevalence_and_what_a_blind_scorer_gets():
    assert metrics.chance_cmap(np.array([0, 0, 1, 2])) == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    rng = np.random.default_rng(2)
    y = rng.choice(3, size=20000, p=[0.6, 0.3, 0.1])
    blind = metrics.cmap(y, rng.random((y.size, 3)))
    assert blind == pytest.approx(metrics.chance_cmap(y), abs=0.01)


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))  # label 4 only predicted
    assert metrics.accuracy(y, p) == pytest.approx(sk.accuracy_score(y, p))
    assert metrics.macro_f1(y, p) == pytest.approx(
        sk.f1_score(y, p, average="macro", zero_division=0)
    )


def test_chance_accuracy_is_the_majority_rate():
    y_test = np.array([0, 1, 1, 2])
    assert metrics.chance_accuracy(y_test) == 0.5
    assert metrics.chance_accuracy(y_test, y_train=np.array([2, 2, 0])) == 0.25


def test_leakage_reduction():
    assert metrics.leakage_reduction(0.7, 0.5, 0.3) == pytest.approx(0.5)
    assert metrics.leakage_reduction(0.7, 0.3, 0.3) == pytest.approx(1.0)
    assert metrics.leakage_reduction(0.3, 0.2, 0.3) is None
    assert metrics.leakage_reduction(float("nan"), 0.2, 0.3) is None
