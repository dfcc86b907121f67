"""The one prediction core that `train eval`, `export bench` and fit's validation share."""

from __future__ import annotations

import numpy as np
import pytest

from affect.blendshapes import MEDIAPIPE_BLENDSHAPES, mirror_order
from affect.labels import EXPRESSIONS, FER2013_CLASSES
from affect.predict import au_probabilities, predict_batches, remap_targets

NAMES = list(MEDIAPIPE_BLENDSHAPES)


def _model(calls):
    """Outputs that depend on the left/right layout of the image and on every blendshape column."""
    weights = np.linspace(-1, 1, 8)

    def predict(x, b):
        calls.append((x.copy(), None if b is None else b.copy()))
        left = x[..., : x.shape[-1] // 2].mean(axis=(1, 2, 3))
        extra = 0 if b is None else b @ np.arange(b.shape[1])
        return {"expression": np.outer(left + extra, weights), "valence_arousal": np.stack([left, -left], 1),
                "action_units": np.outer(left, [1.0, -1.0])}
    return predict


def test_mirroring_flips_the_image_swaps_blendshapes_and_averages_two_outputs():
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 8, 8), np.float32)
    b = rng.random((3, len(NAMES)), np.float32)
    calls: list = []
    plain = predict_batches(_model([]), [(x, b, np.array([4, 5, 6]))])
    both = predict_batches(_model(calls), [(x, b, np.array([4, 5, 6]))], tta=True, blendshape_names=NAMES)
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[1][0], x[..., ::-1])
    np.testing.assert_array_equal(calls[1][1], b[:, mirror_order(NAMES)])
    flipped = predict_batches(_model([]), [(x[..., ::-1], b[:, mirror_order(NAMES)], np.arange(3))])
    np.testing.assert_allclose(both["logits"], (plain["logits"] + flipped["logits"]) / 2)
    np.testing.assert_allclose(both["va"], (plain["va"] + flipped["va"]) / 2)
    np.testing.assert_array_equal(both["aus"], plain["aus"])  # AU outputs are not averaged
    assert both["index"].tolist() == [4, 5, 6] and both["logits"].dtype == np.float64
    assert predict_batches(_model([]), []) == {}


def test_au_sigmoid_and_label_remapping():
    np.testing.assert_allclose(au_probabilities(np.array([0.0, 100.0, -100.0])), [0.5, 1.0, 0.0], atol=1e-12)
    fer = list(FER2013_CLASSES)
    y, lacking = remap_targets([fer.index("Happy"), -1, fer.index("Neutral")], fer, EXPRESSIONS)
    assert y.tolist() == [EXPRESSIONS.index("Happy"), -1, EXPRESSIONS.index("Neutral")] and lacking == {}
    y, lacking = remap_targets([EXPRESSIONS.index("Contempt"), EXPRESSIONS.index("Sad")], EXPRESSIONS,
                               ["Neutral", "Happy", "Sad"])
    assert y.tolist() == [-1, 2] and lacking == {"Contempt": 1}


@pytest.mark.parametrize("tta", [False, True])
def test_train_eval_runs_the_core(tta, monkeypatch):
    """train.evaluate.predict is the core over AffectDataset-style batches (unreadable ones skipped)."""
    from train.evaluate import predict

    class Backend:
        spec = type("Spec", (), {"blendshapes": NAMES})()
        predict = staticmethod(_model([]))

    x = np.random.default_rng(1).random((2, 3, 8, 8), np.float32)
    b = np.random.default_rng(2).random((2, len(NAMES)), np.float32)
    loader = [{"n_bad": 2, "batch_size": 0}, {"image": x, "blendshapes": b, "index": np.array([0, 1]), "n_bad": 1}]
    raw = predict(Backend(), loader, tta, "m.onnx")
    core = predict_batches(Backend.predict, [(x, b, np.array([0, 1]))], tta, NAMES)
    np.testing.assert_array_equal(raw["logits"], core["logits"])
    assert int(raw["n_bad"]) == 3
