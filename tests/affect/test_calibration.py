"""Temperature scaling (affect.calibration) and the reliability bins metrics.json carries."""

from __future__ import annotations

import numpy as np
import pytest

from affect import metrics as M
from affect.calibration import CalibrationPart, fit_temperature, part_nll
from affect.preprocess import expression_probabilities, softmax


def _sampled(true_t: float, n: int = 6000, classes: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / true_t): T = true_t is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, classes))
    p = softmax(logits / true_t)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return logits, y


@pytest.mark.parametrize("true_t", [0.6, 1.0, 1.8])
def test_fit_temperature_finds_the_temperature_the_labels_were_drawn_at(true_t):
    logits, y = _sampled(true_t)
    fitted = fit_temperature([CalibrationPart("drawn", logits, y)])
    assert fitted == pytest.approx(true_t, rel=0.08)
    before = M.expected_calibration_error(y, softmax(logits))
    after = M.expected_calibration_error(y, expression_probabilities(logits, fitted))
    assert after <= 0.03 and (true_t == 1.0 or after < before)


def test_parts_are_scored_over_their_own_classes_and_weigh_equally():
    logits, y = _sampled(0.6, n=3000)
    # A part that cannot have class 7 scores the softmax over classes 0..6 only.
    no_last = y != 7
    part = CalibrationPart("seven", logits[no_last], y[no_last], columns=range(7))
    sub = logits[no_last][:, :7]
    expected = -np.log(softmax(sub / 0.9)[np.arange(no_last.sum()), y[no_last]]).mean()
    assert part_nll(part, 0.9) == pytest.approx(expected)
    # A small part at another temperature pulls the fit as much as a part 10x its size.
    big = CalibrationPart("big", *_sampled(0.6, n=4000, seed=1))
    small = CalibrationPart("small", *_sampled(1.6, n=400, seed=2))
    both = fit_temperature([big, small])
    assert fit_temperature([big]) < both < fit_temperature([small])
    with pytest.raises(ValueError, match="outside the part's columns"):
        CalibrationPart("bad", logits, y, columns=range(7)).restricted()


def test_calibration_bins_are_what_ece_averages():
    logits, y = _sampled(0.6, n=2000)
    probs = softmax(logits)
    bins = M.calibration_bins(y, probs)
    count = np.array(bins["count"])
    assert count.sum() == y.size and len(count) == bins["n_bins"] == M.ECE_BINS
    filled = count > 0
    conf, acc = np.array(bins["confidence"])[filled], np.array(bins["accuracy"])[filled]
    assert M.expected_calibration_error(y, probs) == pytest.approx((count[filled] * np.abs(acc - conf)).sum() / y.size)
    # Under-confident here (drawn sharper than softmax(logits)): accuracy above confidence in most faces' bins.
    assert (count[filled] * (acc - conf)).sum() > 0
    out = M.expression_metrics([str(i) for i in range(8)], y, probs)
    assert out["calibration"]["count"] == bins["count"]
    assert out["nll"] == pytest.approx(-np.log(probs[np.arange(y.size), y]).mean())
    assert out["mean_confidence"] == pytest.approx(probs.max(axis=1).mean())
