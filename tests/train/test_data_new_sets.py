"""AffectNet-96, RAF-DB and FER+ votes as datasets of the recipe, the decoded-crop
cache, soft targets in the loss, and a tiny fit mixing all four datasets — on a
handful of real files copied from ../shared."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fit import tiny_config

from affect.datasets.crops import eval_crop, read_image
from affect.datasets.loaders import FERPLUS_COLUMNS, load_dataset
from affect.labels import EXPRESSIONS
from train import data as tdata
from train.data.crop_cache import build_crop_cache
from train.losses import masked_cross_entropy

CONTEMPT = EXPRESSIONS.index("Contempt")
SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: these tests need the project's ../shared data")
    return path


def _copy_class_folders(src: Path, dst: Path, per_class: int) -> Path:
    for folder in sorted(d for d in src.iterdir() if d.is_dir()):
        (dst / folder.name).mkdir(parents=True)
        for f in sorted(folder.iterdir())[:per_class]:
            shutil.copy(f, dst / folder.name / f.name)
    return dst


@pytest.fixture()
def affectnet96_small(tmp_path) -> Path:
    return _copy_class_folders(shared_path("data", "affectnet96"), tmp_path / "affectnet96", 3)


@pytest.fixture()
def rafdb_small(tmp_path) -> Path:
    _copy_class_folders(shared_path("data", "rafdb", "train"), tmp_path / "rafdb" / "train", 4)
    return tmp_path / "rafdb"


@pytest.fixture()
def fer_small(tmp_path) -> Path:
    """FER2013 Training + PublicTest (4 faces a class) and the ferplus.csv rows of those faces,
    plus bad rows: a file that does not exist, all-zero votes, votes that are not numbers."""
    src = shared_path("data", "fer2013")
    root = tmp_path / "fer2013"
    for usage in ("Training", "PublicTest"):
        _copy_class_folders(src / usage, root / usage, 4)
    have = {f"{p.parent.parent.name},{p.parent.name}/{p.name}" for p in root.glob("*/*/*.jpg")}
    lines = (src / "ferplus.csv").read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ",".join(ln.split(",")[:2]) in have]
    kept += ["Training,angry/does_not_exist.jpg,10,0,0,0,0,0,0,0,0,0",
             "Training,happy/" + next(p.name for p in (root / "Training" / "happy").iterdir())
             + ",0,0,0,0,0,0,0,0,0,0",
             "Training,sad/x.jpg,a,b,c,0,0,0,0,0,0,0"]
    (root / "ferplus.csv").write_text("\n".join(kept) + "\n")
    return root


def test_affectnet96_maps_its_folders_to_affectnet_order_and_masks_valence_arousal(affectnet96_small):
    info = load_dataset({"type": "affectnet96", "root": str(affectnet96_small)})
    assert len(info) == 24
    for s in info.samples:
        folder = Path(s.path).parent.name
        assert EXPRESSIONS[s.expression].lower() == {"anger": "anger", "sad": "sad"}.get(folder, folder)
        assert np.isnan(s.valence) and np.isnan(s.arousal)
    assert not info.has_va
    assert info.class_mask(list(EXPRESSIONS)).all()  # all 8 classes, Contempt included


def test_rafdb_has_no_contempt_and_is_masked_for_it(rafdb_small):
    info = load_dataset({"type": "rafdb", "root": str(rafdb_small)})
    assert len(info) == 28
    mask = info.class_mask(list(EXPRESSIONS))
    assert not mask[CONTEMPT] and mask.sum() == 7
    assert {EXPRESSIONS[s.expression] for s in info.samples} == set(EXPRESSIONS) - {"Contempt"}
    assert not info.has_va


def test_ferplus_votes_give_soft_targets_and_drop_unknown_and_bad_rows(fer_small, caplog):
    votes = {}
    for ln in (fer_small / "ferplus.csv").read_text().splitlines()[1:]:
        split, file, *counts = ln.split(",")
        votes[(split, file)] = counts
    with caplog.at_level(logging.WARNING):
        info = load_dataset({"type": "fer2013", "root": str(fer_small), "usage": "Training",
                             "ferplus": True})
    assert info.class_mask(list(EXPRESSIONS))[CONTEMPT]  # FER+ has contempt, the folders do not
    assert info.skipped["ferplus_unknown_file"] == 1
    assert info.skipped["ferplus_no_votes"] == 1
    assert info.skipped["ferplus_unreadable_row"] == 1
    assert "no votes" in caplog.text
    assert info.samples
    for s in info.samples:
        assert s.soft is not None and s.soft.sum() == pytest.approx(1.0)
        counts = np.array(votes[("Training", f"{Path(s.path).parent.name}/{Path(s.path).name}")], float)
        top = FERPLUS_COLUMNS[int(np.argmax(counts))]
        assert top not in ("unknown", "not_face")
        assert s.expression == int(np.argmax(s.soft))  # the majority
    # A face whose majority is unknown or not-a-face is left out.
    for (split, file), counts in votes.items():
        c = np.array(counts, float) if all(x.replace(".", "").isdigit() for x in counts) else None
        if split == "Training" and c is not None and c.sum() and np.argmax(c) >= 8:
            assert not any(s.path.endswith(file) for s in info.samples)
    # The folder labels stay available without `ferplus`.
    plain = load_dataset({"type": "fer2013", "root": str(fer_small), "usage": "Training"})
    assert len(plain) == 28 and all(s.soft is None for s in plain.samples)


def test_soft_targets_and_per_sample_smoothing_in_the_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    target = torch.tensor([0, 1])
    soft = torch.tensor([[0.2, 0.8, 0.0], [float("nan")] * 3])
    logp = torch.log_softmax(logits, 1)
    want = (-(soft[0] * logp[0]).sum() - logp[1, 1]) / 2
    assert masked_cross_entropy(logits, target, soft=soft) == pytest.approx(float(want), rel=1e-6)
    # Per-sample smoothing: the first sample's own 0.5, the second the run's 0.0.
    eps = torch.tensor([0.5, float("nan")])
    t0 = 0.5 * torch.nn.functional.one_hot(target[0], 3) + 0.5 / 3
    want = (-(t0 * logp[0]).sum() - logp[1, 1]) / 2
    assert masked_cross_entropy(logits, target, sample_smoothing=eps) == pytest.approx(float(want), rel=1e-6)


def test_crop_cache_matches_decoding_and_is_rebuilt_when_a_source_changes(tmp_path, rafdb_small):
    info = load_dataset({"type": "rafdb", "root": str(rafdb_small)})
    samples = info.samples[:6]
    cache = build_crop_cache(samples, 64, tmp_path / "cache", "rafdb-train", progress=False)
    for i, s in enumerate(samples):
        crop, _ = eval_crop(read_image(s), s, 64)
        np.testing.assert_array_equal(cache.crops[i], crop)
    again = build_crop_cache(samples, 64, tmp_path / "cache", "rafdb-train", progress=False)
    assert again.path == cache.path  # read back, not rebuilt
    # Replace one source image by another picture: a new cache, the stale one removed.
    shutil.copy(samples[1].path, samples[0].path)
    rebuilt = build_crop_cache(samples, 64, tmp_path / "cache", "rafdb-train", progress=False)
    assert rebuilt.path != cache.path and not cache.path.exists()
    np.testing.assert_array_equal(rebuilt.crops[0], rebuilt.crops[1])


def test_a_corrupt_image_is_skipped_and_counted_in_the_cache_and_the_dataset(tmp_path, rafdb_small):
    info = load_dataset({"type": "rafdb", "root": str(rafdb_small)})
    samples = info.samples[:5]
    Path(samples[2].path).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cache = build_crop_cache(samples, 48, tmp_path / "cache", "rafdb-train", progress=False)
    assert cache.n_bad == 1 and not cache.ok[2]
    ds = tdata.AffectDataset(samples, size=48, mean=(0.5,) * 3, std=(0.5,) * 3, labels=EXPRESSIONS, cache=cache)
    batch = tdata.collate_skip_bad([ds[i] for i in range(len(ds))])
    assert batch["n_bad"] == 1 and batch["batch_size"] == 4 and ds.n_bad == 1
    assert torch.isnan(batch["soft"]).all()  # hard labels: no distribution


def test_tiny_fit_mixes_all_four_datasets(tmp_path, affectnet96_small, rafdb_small, fer_small, affectnet_root):
    from train.fit import fit

    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, batch_size=16, samples_per_epoch=64)
    cfg["data"].update(cache=True, cache_dir=str(tmp_path / "crops"), datasets=[
        {"type": "affectnet", "root": str(affectnet_root), "limit": 40, "weight": 0.25},
        {"type": "affectnet96", "root": str(affectnet96_small), "role": "train", "weight": 0.25,
         "label_smoothing": 0.3},
        {"type": "rafdb", "root": str(rafdb_small), "fractions": [0.6, 0.2, 0.2], "weight": 0.25},
        {"type": "fer2013", "root": str(fer_small), "usage": "Training", "ferplus": True, "name": "ferplus",
         "fractions": [0.8, 0.2], "weight": 0.25},
        {"type": "fer2013", "root": str(fer_small), "usage": "PublicTest", "ferplus": True,
         "name": "ferplus_test", "role": "test"},
    ])
    run = fit(cfg)
    import json

    splits = json.loads((run / "splits.json").read_text())
    test = splits["test"]
    assert any("/rafdb/" in p for p in test) and any("/PublicTest/" in p for p in test)
    assert not any("/affectnet96/" in p for p in test + splits["val"])  # role train: never held out
    assert not set(test) & set(splits["train"])
    assert len(list((tmp_path / "crops").glob("*.crops.npy"))) >= 4  # one per trained part
    history = (run / "history.csv").read_text()
    assert "train_loss_expression" in history and "train_loss_va" in history
