"""affect.metrics against scikit-learn where it has the metric, and against
hand-computed values where it does not (CCC, SAGR, alpha, ECE)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from affect import metrics as M
from affect.labels import EXPRESSIONS, FER2013_CLASSES


@pytest.fixture()
def clf():
    rng = np.random.default_rng(1)
    n, k = 300, 8
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5  # better than chance, so metrics are not all ~0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


# --- expression --------------------------------------------------------------------------------

def test_expression_metrics_match_sklearn(clf):
    y, probs = clf
    pred = probs.argmax(1)
    m = M.expression_metrics(EXPRESSIONS, y, probs)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["pr_auc_macro"] == pytest.approx(
        skm.average_precision_score(label_binarize(y, classes=range(8)), probs, average="macro"))
    assert m["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=2))
    assert m["confusion"] == skm.confusion_matrix(y, pred).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(EXPRESSIONS):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i]))
    norm = np.asarray(m["confusion_normalised"])
    assert np.allclose(norm.sum(1), 1.0)
    assert 0.3 < m["accuracy"] < 1.0


def test_roc_auc_only_over_classes_present_in_y_true(clf):
    y, probs = clf
    keep = y != 7  # no Contempt in the test set
    m = M.expression_metrics(EXPRESSIONS, y[keep], probs[keep])
    expected = np.mean([skm.roc_auc_score(y[keep] == c, probs[keep, c]) for c in range(7)])
    assert m["roc_auc_macro"] == pytest.approx(expected)
    assert m["per_class"]["Contempt"]["support"] == 0


def test_single_class_gives_nan_auc_without_warnings():
    y = np.zeros(10, int)
    probs = np.full((10, 3), 1 / 3)
    probs[:, 0] += 0.1
    probs /= probs.sum(1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = M.expression_metrics(["Neutral", "Happy", "Sad"], y, probs)
    assert m["accuracy"] == 1.0
    assert math.isnan(m["roc_auc_macro"]) and math.isnan(m["pr_auc_macro"])
    assert math.isnan(m["krippendorff_alpha"])  # one category only: 0/0


def test_unlabelled_samples_are_dropped(clf):
    y, probs = clf
    y2 = y.copy()
    y2[:50] = -1
    m = M.expression_metrics(EXPRESSIONS, y2, probs)
    assert m["n"] == 250
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y[50:], probs[50:].argmax(1)))


def test_expression_errors_are_clear():
    with pytest.raises(M.MetricsError, match="no labelled samples"):
        M.expression_metrics(EXPRESSIONS, np.zeros(0, int), np.zeros((0, 8)))
    with pytest.raises(M.MetricsError, match="shape"):
        M.expression_metrics(EXPRESSIONS, np.zeros(4, int), np.zeros((4, 7)))
    bad = np.full((3, 8), 1 / 8)
    bad[1, 2] = np.nan
    with pytest.raises(M.MetricsError, match="NaN"):
        M.expression_metrics(EXPRESSIONS, np.zeros(3, int), bad)


def test_krippendorff_alpha_hand_computed():
    # Coincidences: o00=2, o01=o10=1, o11=4; n=8, n0=3, n1=5.
    # alpha = 1 - (n-1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k = 1 - 7*2/30 = 8/15.
    assert M.krippendorff_alpha_nominal([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(8 / 15)
    assert M.krippendorff_alpha_nominal([0, 1, 2, 1], [0, 1, 2, 1]) == pytest.approx(1.0)


def test_ece_hand_computed():
    # Two bins used: conf 0.9 (2 samples, 1 correct) and 0.6 (2 samples, both correct).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    expected = (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    assert M.expected_calibration_error(y, probs) == pytest.approx(expected)
    perfect = np.eye(3)[[0, 1, 2]]
    assert M.expected_calibration_error(np.array([0, 1, 2]), perfect) == pytest.approx(0.0)


def test_restrict_classes_argmax_over_shared_classes():
    probs = np.array([[0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7],   # Contempt top, Happy next
                      [0.6, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3]])
    y = np.array([1, 0])
    labels, y2, p2 = M.restrict_classes(EXPRESSIONS, y, probs, FER2013_CLASSES)
    assert "Contempt" not in labels and len(labels) == 7
    assert np.allclose(p2.sum(1), 1.0)
    assert [labels[i] for i in p2.argmax(1)] == ["Happy", "Neutral"]
    assert [labels[i] for i in y2] == ["Happy", "Neutral"]
    with pytest.raises(M.MetricsError, match="Contempt"):
        M.restrict_classes(EXPRESSIONS, np.array([7]), probs[:1], FER2013_CLASSES)
    with pytest.raises(M.MetricsError, match="no class in common"):
        M.restrict_classes(["A", "B"], np.array([0]), np.array([[1.0, 0.0]]), FER2013_CLASSES)


# --- valence / arousal -------------------------------------------------------------------------

def test_ccc_and_sagr_hand_computed():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([2.0, 2.0, 4.0])
    # mean x=2, y=8/3; var x=2/3, var y=8/9; cov=2/3; ccc = (4/3) / (2/3 + 8/9 + 4/9) = 2/3.
    assert M.ccc(x, y) == pytest.approx(2 / 3)
    assert M.ccc(x, x) == pytest.approx(1.0)
    assert M.ccc(x, -x + 4) == pytest.approx(-1.0)
    assert M.sagr([0.5, -0.2, 0.1, -0.4], [0.3, 0.1, 0.2, -0.9]) == pytest.approx(0.75)


def test_regression_metrics_match_numpy_and_scipy():
    rng = np.random.default_rng(3)
    t = rng.uniform(-1, 1, 200)
    p = np.clip(t + rng.normal(0, 0.3, 200), -1, 1)
    r = M.regression_metrics(t, p)
    assert r["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)))
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert r["pcc"] == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert r["ccc"] <= r["pcc"] + 1e-12  # CCC also penalises bias and scale


def test_regression_drops_nan_targets():
    t = np.array([0.1, np.nan, -0.5, 0.7, np.nan])
    p = np.array([0.2, 5.0, -0.4, 0.6, -5.0])
    r = M.regression_metrics(t, p)
    assert r["n"] == 3
    assert r["mae"] == pytest.approx(0.1)


def test_constant_prediction_ccc_zero_and_pearson_nan_without_warnings():
    t = np.array([-0.5, 0.0, 0.5, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = M.regression_metrics(t, np.full(4, 0.2))
        same = M.regression_metrics(np.full(3, 0.2), np.full(3, 0.2))
    assert r["ccc"] == 0.0
    assert math.isnan(r["pcc"])
    assert math.isnan(same["ccc"])  # 0/0: both the same constant
    assert same["rmse"] == 0.0


def test_regression_errors_are_clear():
    with pytest.raises(M.MetricsError, match="valence: no samples"):
        M.regression_metrics(np.array([np.nan, np.nan]), np.array([0.0, 0.0]), "valence")
    with pytest.raises(M.MetricsError, match="NaN"):
        M.regression_metrics(np.array([0.1, 0.2]), np.array([np.nan, 0.0]))
    with pytest.raises(M.MetricsError, match="2 targets but 3"):
        M.regression_metrics(np.zeros(2), np.zeros(3))


# --- action units ------------------------------------------------------------------------------

def test_au_metrics_match_sklearn_and_mask_missing():
    rng = np.random.default_rng(4)
    t = (rng.random((100, 3)) < 0.3).astype(float)
    p = np.clip(t * 0.5 + rng.random((100, 3)) * 0.6, 0, 1)
    t_masked = t.copy()
    t_masked[:20, 1] = np.nan
    m = M.au_metrics(["AU1", "AU2", "AU4"], t_masked, p)
    yp = p >= 0.5
    f1s = [skm.f1_score(t[:, 0], yp[:, 0]), skm.f1_score(t[20:, 1], yp[20:, 1]), skm.f1_score(t[:, 2], yp[:, 2])]
    assert m["per_au"]["AU2"]["f1"] == pytest.approx(f1s[1])
    assert m["per_au"]["AU2"]["n"] == 80
    assert m["f1_macro"] == pytest.approx(np.mean(f1s))
    aps = [skm.average_precision_score(t[:, 0], p[:, 0]), skm.average_precision_score(t[20:, 1], p[20:, 1]),
           skm.average_precision_score(t[:, 2], p[:, 2])]
    assert m["map"] == pytest.approx(np.mean(aps))
    correct = (yp[:, 0] == t[:, 0]).sum() + (yp[20:, 1] == t[20:, 1]).sum() + (yp[:, 2] == t[:, 2]).sum()
    assert m["binary_accuracy"] == pytest.approx(correct / 280)


# --- bootstrap ---------------------------------------------------------------------------------

def test_vectorised_stats_equal_the_scalar_metrics(clf):
    y, probs = clf
    pred = probs.argmax(1)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), (5, len(y)))
    f1 = M.macro_f1_stat(y[idx], pred[idx])
    for b in range(5):
        assert f1[b] == pytest.approx(skm.f1_score(y[idx[b]], pred[idx[b]], average="macro"))
    # Non-index labels (floats) take the generic unique() path and agree.
    assert M.macro_f1_stat(y[idx].astype(float), pred[idx].astype(float)) == pytest.approx(f1)
    t, p = rng.normal(size=50), rng.normal(size=50)
    assert M.ccc_stat(t[None], p[None])[0] == pytest.approx(M.ccc(t, p))


def test_bootstrap_ci_is_seeded_and_contains_the_estimate(clf):
    y, probs = clf
    pred = probs.argmax(1)
    lo, hi = M.bootstrap_ci(M.accuracy_stat, y, pred, seed=7)
    assert (lo, hi) == M.bootstrap_ci(M.accuracy_stat, y, pred, seed=7)
    acc = (y == pred).mean()
    assert lo < acc < hi
    assert 0.02 < hi - lo < 0.2  # ~ ±1.96 * sqrt(p(1-p)/n) for n=300
    with pytest.raises(M.MetricsError, match="empty"):
        M.bootstrap_ci(M.accuracy_stat, np.zeros(0), np.zeros(0))


# --- compute_metrics (metrics.json) ------------------------------------------------------------

def test_compute_metrics_schema_and_json(clf):
    y, probs = clf
    rng = np.random.default_rng(5)
    va = rng.uniform(-1, 1, (len(y), 2))
    va_pred = va + rng.normal(0, 0.2, va.shape)
    m = M.compute_metrics(EXPRESSIONS, y, probs, va, va_pred, dataset="affectnet", model="m.onnx",
                          bootstrap=200)
    assert {"dataset", "n", "model", "expression", "valence", "arousal", "ci"} <= set(m)
    assert m["n"] == len(y) and m["dataset"] == "affectnet"
    for key in ("labels", "accuracy", "macro_f1", "weighted_f1", "cohen_kappa", "krippendorff_alpha",
                "roc_auc_macro", "pr_auc_macro", "per_class", "confusion"):
        assert key in m["expression"]
    for sec in ("valence", "arousal"):
        assert {"rmse", "mae", "pcc", "sagr", "ccc"} <= set(m[sec])
        lo, hi = m["ci"][f"{sec}_ccc"]
        assert lo <= m[sec]["ccc"] <= hi
    lo, hi = m["ci"]["macro_f1"]
    assert lo <= m["expression"]["macro_f1"] <= hi
    json.loads(json.dumps(m, allow_nan=False))  # valid strict JSON


def test_compute_metrics_restriction_note_and_missing_va(clf):
    y, probs = clf
    keep = y != 7
    va = np.full((keep.sum(), 2), np.nan)  # FER2013: no valence/arousal
    m = M.compute_metrics(EXPRESSIONS, y[keep], probs[keep], va, np.zeros_like(va),
                          restrict_to=FER2013_CLASSES, bootstrap=50)
    assert m["expression"]["labels"] == [x for x in EXPRESSIONS if x != "Contempt"]
    assert "Contempt" in m["note"] and "valence" not in m and "arousal" not in m
    assert len(m["expression"]["confusion"]) == 7


def test_compute_metrics_nan_becomes_null():
    y = np.zeros(5, int)
    probs = np.tile([0.9, 0.1], (5, 1))
    m = M.compute_metrics(["Neutral", "Happy"], y, probs, bootstrap=20)
    assert m["expression"]["roc_auc_macro"] is None
    json.dumps(m, allow_nan=False)


def test_compute_metrics_empty_input_is_an_error():
    with pytest.raises(M.MetricsError, match="empty"):
        M.compute_metrics(EXPRESSIONS, np.zeros(0, int), np.zeros((0, 8)), dataset="fer2013")
    with pytest.raises(M.MetricsError, match="no labels or targets"):
        M.compute_metrics(EXPRESSIONS, np.full(3, -1), np.full((3, 8), 1 / 8))


def test_compute_metrics_bootstrap_zero_skips_cis(clf):
    y, probs = clf
    m = M.compute_metrics(EXPRESSIONS, y, probs, bootstrap=0)
    assert m["ci"] == {} and m["expression"]["accuracy"] > 0
