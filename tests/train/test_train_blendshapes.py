"""Blendshapes as a second model input on the training side: the cache of
landmarker scores, left/right mirroring with the image, dropout, and a fit
whose checkpoint says it takes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_fit import tiny_config

from affect.blendshapes import MEDIAPIPE_BLENDSHAPES, blendshape_row, mirror_order
from affect.datasets.blendshapes import attach_blendshapes
from affect.datasets.loaders import load_dataset
from affect.datasets.records import DataError
from affect.labels import EXPRESSIONS
from affect.labels import EXPRESSIONS as EXPRESSIONS_8
from train import data as tdata
from train.models import build_model

NAMES = list(MEDIAPIPE_BLENDSHAPES)


def test_mirror_order_swaps_left_and_right_and_keeps_the_rest():
    m = mirror_order(NAMES)
    assert NAMES[m[NAMES.index("mouthSmileLeft")]] == "mouthSmileRight"
    assert NAMES[m[NAMES.index("eyeBlinkRight")]] == "eyeBlinkLeft"
    assert NAMES[m[NAMES.index("jawOpen")]] == "jawOpen"
    assert sorted(m) == list(range(len(NAMES)))  # a permutation
    assert np.isnan(blendshape_row(None, NAMES)).all()
    assert np.isnan(blendshape_row({"jawOpen": 0.5}, NAMES)).all()  # incomplete = none


def test_cache_finds_real_faces_and_is_reused(tmp_path, affectnet_root, face_model_path):
    info = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 8})
    counts = attach_blendshapes(info.samples, NAMES, face_model_path, tmp_path, progress=False)
    assert counts["computed"] == 8 and counts["found"] >= 6
    rows = np.stack([s.blendshapes for s in info.samples])
    found = np.isfinite(rows).all(1)
    assert ((rows[found] >= 0) & (rows[found] <= 1)).all() and rows[found].std() > 0.01
    again = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 8})
    assert attach_blendshapes(again.samples, NAMES, face_model_path, tmp_path, progress=False)["computed"] == 0
    np.testing.assert_array_equal(np.stack([s.blendshapes for s in again.samples]), rows)
    cache = next(tmp_path.glob("blendshapes-*.npz"))
    cache.write_bytes(b"not a zip")  # a cache cut short by a kill: recomputed, not a crash
    assert attach_blendshapes(again.samples, NAMES, face_model_path, tmp_path, progress=False)["computed"] == 8
    np.testing.assert_array_equal(np.stack([s.blendshapes for s in again.samples]), rows)
    with pytest.raises(DataError, match="face model not found"):
        attach_blendshapes(again.samples, NAMES, tmp_path / "missing.task", tmp_path)


def test_dataset_mirrors_blendshapes_with_a_flip_and_drops_them(affectnet_root):
    info = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 2})
    s = info.samples[0]
    s.blendshapes = np.linspace(0, 1, len(NAMES), dtype=np.float32)
    flip_only = tdata.AugmentConfig(hflip=1.0, rotation=0, scale=0, shift=0, brightness=0, contrast=0, erasing=0)
    ds = tdata.AffectDataset([s], 64, [0.5] * 3, [0.5] * 3, list(EXPRESSIONS), augment=flip_only,
                             blendshapes=NAMES)
    got = ds[0]["blendshapes"].numpy()
    assert np.array_equal(got, s.blendshapes[mirror_order(NAMES)]) and not np.array_equal(got, s.blendshapes)
    plain = tdata.AffectDataset([s], 64, [0.5] * 3, [0.5] * 3, list(EXPRESSIONS), blendshapes=NAMES)
    assert np.array_equal(plain[0]["blendshapes"].numpy(), s.blendshapes)  # eval: as computed
    dropped = tdata.AffectDataset([s], 64, [0.5] * 3, [0.5] * 3, list(EXPRESSIONS),
                                  augment=flip_only, blendshapes=NAMES, blendshape_dropout=1.0)
    assert torch.isnan(dropped[0]["blendshapes"]).all()
    with pytest.raises(DataError, match="blendshape scores"):
        s.blendshapes = np.zeros(3, np.float32)
        tdata.AffectDataset([s], 64, [0.5] * 3, [0.5] * 3, list(EXPRESSIONS), blendshapes=NAMES)


def test_model_reads_blendshapes_and_a_nan_row_means_image_only():
    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained=None, input_size=48, blendshapes=NAMES).eval()
    x = torch.rand(3, 3, 48, 48)
    scores = torch.rand(3, len(NAMES))
    scores[2] = float("nan")
    with torch.no_grad():
        out = model(x, scores)["expression"]
        alone = model(x)["expression"]
        other = model(x, torch.rand(3, len(NAMES)))["expression"]
    assert torch.isfinite(out).all()
    assert torch.allclose(out[2], alone[2]) and not torch.allclose(out[:2], alone[:2])
    assert not torch.allclose(out[:2], other[:2])  # the scores matter


def test_fit_with_blendshapes_writes_a_model_that_takes_them(tmp_path, affectnet_root, face_model_path):
    from train.checkpoint import model_from_checkpoint
    from train.fit import fit

    cfg = tiny_config(tmp_path, affectnet_root, epochs=1)
    cfg["model"].update(backbone="small_cnn", pretrained="none", blendshapes=True, face_model=str(face_model_path))
    cfg["data"]["blendshape_cache"] = str(tmp_path / "cache")
    run = fit(cfg)
    model, spec, _ = model_from_checkpoint(run / "checkpoint.pt")
    assert spec.blendshapes == NAMES and model.blendshapes is not None
    assert json.loads((run / "metrics.json").read_text())["n"] > 0
    assert list((tmp_path / "cache").glob("blendshapes-*.npz"))

    # eval gives the held-out faces their blendshapes (or, asked, none) through the same backend
    from train.evaluate import evaluate

    with_bs = evaluate(run / "checkpoint.pt", None, tmp_path / "eval", face_model=face_model_path, bootstrap=0)
    without = evaluate(run / "checkpoint.pt", None, tmp_path / "eval_none", blendshapes=False, bootstrap=0)
    assert with_bs["blendshapes"].startswith("landmarker found") and without["blendshapes"] == "none given"
    a = (tmp_path / "eval" / "predictions.csv").read_text()
    b = (tmp_path / "eval_none" / "predictions.csv").read_text()
    assert a != b  # the scores reached the model

    # export can add a blendshape classifier fitted on this run's training faces to the graph
    from export.onnx_export import export_onnx
    from realtime.backends import create_backend

    plain = export_onnx(run / "checkpoint.pt", tmp_path / "plain.onnx", face_model=face_model_path)
    fused = export_onnx(run / "checkpoint.pt", tmp_path / "fused.onnx", face_model=face_model_path,
                        blendshape_fusion=0.5)
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    b = np.random.default_rng(1).random((3, len(NAMES)), dtype=np.float32)
    b[2] = np.nan
    with create_backend(plain) as p, create_backend(fused) as f:
        assert "blendshape classifier" in f.spec.backbone
        e_plain, e_fused = p.predict(x, b)["expression"], f.predict(x, b)["expression"]
    assert not np.allclose(e_plain[:2], e_fused[:2]) and np.allclose(e_plain[2], e_fused[2], atol=1e-5)


def test_fusion_classifier_matches_sklearn_and_leaves_faces_without_blendshapes_alone(affectnet_root,
                                                                                      face_model_path, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from train.blendshape_fusion import BlendshapeFusion, FusionError, fit_blendshape_classifier

    info = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 40})
    attach_blendshapes(info.samples, NAMES, face_model_path, tmp_path, progress=False)
    x = np.stack([s.blendshapes for s in info.samples])
    y = np.array([s.expression for s in info.samples])
    clf = fit_blendshape_classifier(x, y, 8, c=0.1)
    ok = np.isfinite(x).all(1)
    z = (x[ok] - x[ok].mean(0)) / np.maximum(x[ok].std(0), 0.01)  # standardised, with the scale floor
    ref = LogisticRegression(C=0.1, max_iter=5000).fit(z, y[ok])
    with torch.no_grad():
        ours = torch.softmax(clf(torch.from_numpy(x[ok])), 1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(z), atol=1e-4)

    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained=None, input_size=48, blendshapes=NAMES).eval()
    fused = BlendshapeFusion(model, clf, 0.5).eval()
    images = torch.rand(3, 3, 48, 48)
    scores = torch.from_numpy(x[np.flatnonzero(ok)[:3]].copy())
    scores[2] = float("nan")
    with torch.no_grad():
        own, mixed = model(images, scores), fused(images, scores)
    expected = 0.5 * torch.log_softmax(own["expression"][:2], 1) + 0.5 * torch.log_softmax(clf(scores[:2]), 1)
    assert torch.allclose(mixed["expression"][:2], expected, atol=1e-5)
    assert torch.equal(mixed["expression"][2], own["expression"][2])  # no blendshapes: the model alone
    assert torch.equal(mixed["valence_arousal"], own["valence_arousal"])
    with pytest.raises(FusionError, match="classes"):
        fit_blendshape_classifier(x, np.where(y == 7, 0, y), 8)  # no Contempt face


def test_standardised_branch_uses_training_statistics_and_round_trips(tmp_path):
    from train.checkpoint import model_args, model_from_checkpoint, save_checkpoint, spec_for

    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained=None, input_size=48, blendshapes=NAMES,
                        blendshape_standardise=True).eval()
    rows = np.random.default_rng(0).random((30, len(NAMES))).astype(np.float32) * 0.2
    rows[:, 6] = 1e-5  # a score that never varies: its scale is floored, not ~0
    rows[3] = np.nan  # faces without blendshapes do not count
    model.blendshapes.set_statistics(rows)
    assert np.allclose(model.blendshapes.mean.numpy(), np.nanmean(rows, 0), atol=1e-6)
    assert model.blendshapes.scale[6] == pytest.approx(0.01)
    x, b = torch.rand(2, 3, 48, 48), torch.from_numpy(rows[:2].copy())
    with torch.no_grad():
        before = model(x, b)["expression"]
    path = save_checkpoint(tmp_path / "m.pt", model=model, spec=spec_for(model, list(EXPRESSIONS_8)),
                           model_args=model_args(model, 512, 0.3))
    loaded, _, ckpt = model_from_checkpoint(path)
    assert ckpt["model_args"]["blendshape_standardise"] is True
    with torch.no_grad():
        assert torch.allclose(loaded(x, b)["expression"], before, atol=1e-6)
