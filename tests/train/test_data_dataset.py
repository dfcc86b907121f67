"""AffectDataset items, eval-path parity with prepare_batch, augmentation
moving landmarks with the pixels, bad images, masks and mixing."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from affect.crop import box_from_xywh, crop_face, points_to_crop
from affect.datasets.crops import read_image
from affect.datasets.loaders import load_affectnet, load_fer2013_folders
from affect.datasets.records import DataError, Sample
from affect.labels import EXPRESSIONS
from affect.preprocess import prepare_batch
from affect.spec import ModelSpec
from train.data import FLIP_68, AffectDataset, AugmentConfig, MixedDataset, augment_image, collate_skip_bad

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
FLIP_ONLY = AugmentConfig(hflip=1.0, rotation=0, scale=0, shift=0, brightness=0, contrast=0)


def _spec(size: int) -> ModelSpec:
    return ModelSpec(input_size=size, mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def affectnet_small(affectnet_root):
    return load_affectnet(affectnet_root, limit=6)


def test_item_has_the_documented_keys_shapes_and_masks(affectnet_small):
    ds = AffectDataset(affectnet_small.samples, 64, MEAN, STD, EXPRESSIONS, num_landmarks=68,
                       au_names=("AU1", "AU2"))
    item = ds[2]
    s = affectnet_small.samples[2]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["expression"].dtype == torch.int64 and item["expression"].item() == s.expression
    assert item["class_mask"].dtype == torch.bool and item["class_mask"].all()
    assert item["va"].tolist() == pytest.approx([s.valence, s.arousal]) and item["va_mask"].all()
    assert item["landmarks"].shape == (136,) and bool(item["landmarks_mask"])
    # AffectNet landmarks are pixels of the 224 image: [0, 1] crop units = /224
    np.testing.assert_allclose(item["landmarks"].numpy(), s.landmarks.ravel() / 224, rtol=1e-5)
    assert item["aus"].shape == (2,) and not item["aus_mask"].any()  # AffectNet has no AU labels
    assert item["index"].item() == 2
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_skip_bad)))
    assert batch["image"].shape == (3, 3, 64, 64) and batch["n_bad"] == 0 and batch["batch_size"] == 3
    no_lm = AffectDataset(affectnet_small.samples, 64, MEAN, STD, EXPRESSIONS)[0]
    assert no_lm["landmarks"].shape == (0,) and not no_lm["landmarks_mask"]


def test_eval_path_equals_prepare_batch(affectnet_small, fer2013_root):
    s = affectnet_small.samples[0]
    item = AffectDataset([s], 96, MEAN, STD, EXPRESSIONS)[0]
    rgb = np.asarray(Image.open(s.path).convert("RGB"))
    assert torch.equal(item["image"], torch.from_numpy(prepare_batch([rgb], _spec(96))[0]))
    # greyscale FER2013 (48 px, upscaled) goes through the same to_rgb → resize → normalise
    fer = load_fer2013_folders(fer2013_root, usage="PublicTest", limit=3).samples[1]
    grey = np.asarray(Image.open(fer.path))
    assert grey.ndim == 2
    item = AffectDataset([fer], 64, MEAN, STD, EXPRESSIONS)[0]
    assert torch.equal(item["image"], torch.from_numpy(prepare_batch([grey], _spec(64))[0]))


def test_box_samples_crop_like_the_runtime(affectnet_small):
    s = affectnet_small.samples[1]
    box = box_from_xywh(30, 40, 150, 150, {"method": "box", "scale": 1.0}).as_xywh()
    boxed = Sample(path=s.path, expression=s.expression, landmarks=s.landmarks, box=box)
    item = AffectDataset([boxed], 64, MEAN, STD, EXPRESSIONS, num_landmarks=68)[0]
    cb = box_from_xywh(*box, {"method": "box", "scale": 1.0})
    crop = crop_face(read_image(s), cb, 64)
    assert torch.equal(item["image"], torch.from_numpy(prepare_batch([crop], _spec(64))[0]))
    np.testing.assert_allclose(item["landmarks"].numpy(), points_to_crop(s.landmarks, cb).ravel(), atol=1e-5)


def test_flip_68_swaps_left_and_right_and_is_its_own_inverse():
    assert sorted(FLIP_68) == list(range(68))
    assert all(FLIP_68[FLIP_68[i]] == i for i in range(68))
    assert FLIP_68[36] == 45 and FLIP_68[0] == 16 and FLIP_68[48] == 54 and FLIP_68[30] == 30


def test_flip_mirrors_image_and_moves_landmarks(affectnet_small):
    s = affectnet_small.samples[3]
    plain = AffectDataset([s], 64, MEAN, STD, EXPRESSIONS, num_landmarks=68)[0]
    flipped = AffectDataset([s], 64, MEAN, STD, EXPRESSIONS, num_landmarks=68, augment=FLIP_ONLY)[0]
    torch.testing.assert_close(flipped["image"], torch.flip(plain["image"], dims=[2]))
    before = plain["landmarks"].numpy().reshape(68, 2)
    after = flipped["landmarks"].numpy().reshape(68, 2)
    np.testing.assert_allclose(after[:, 0], 1 - before[list(FLIP_68), 0], atol=1e-5)
    np.testing.assert_allclose(after[:, 1], before[list(FLIP_68), 1], atol=1e-5)
    # point 36 is still the outer corner of the eye on the image's left
    assert after[36:42, 0].mean() < after[42:48, 0].mean()
    assert before[36:42, 0].mean() < before[42:48, 0].mean()


@pytest.mark.parametrize("seed", range(4))
def test_affine_augmentation_moves_landmarks_with_the_pixels(seed):
    image = np.zeros((64, 64), np.uint8)
    image[28:31, 17:20] = 255  # a bright dot centred on pixel (18, 29)
    dot = np.full((68, 2), [18.5, 29.5], np.float32)  # pixel centres sit at i + 0.5
    cfg = AugmentConfig(hflip=0.5, rotation=25, scale=0.2, shift=0.1, brightness=0, contrast=0)
    crop = np.repeat(image[:, :, None], 3, axis=2)
    out, pts, _ = augment_image(crop, dot / 64, cfg, np.random.default_rng(seed))
    y, x = np.unravel_index(out[:, :, 0].argmax(), out.shape[:2])
    assert np.hypot(x + 0.5 - pts[0, 0] * 64, y + 0.5 - pts[0, 1] * 64) < 1.5


def test_full_augmentation_is_valid_and_greyscale_keeps_channels_equal(affectnet_small):
    rgb = read_image(affectnet_small.samples[0])
    cfg = AugmentConfig(blur=1.0, noise=10, greyscale=1.0, erasing=1.0)
    out, _, _ = augment_image(rgb[:64, :64].copy(), None, cfg, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    torch.manual_seed(0)
    ds = AffectDataset(affectnet_small.samples, 64, MEAN, STD, EXPRESSIONS, augment=cfg, num_landmarks=68)
    a, b = ds[0], ds[0]
    assert torch.isfinite(a["image"]).all() and not torch.equal(a["image"], b["image"])
    assert (a["image"] == 0).all(dim=0).any()  # random erasing filled a patch with the mean (0)
    with pytest.raises(DataError, match="unknown key"):
        AugmentConfig.from_dict({"hflip": 0.5, "rotate": 10})


def test_corrupt_and_missing_images_are_skipped_and_counted(affectnet_root, tmp_path, caplog):
    good = tmp_path / "good.jpg"
    shutil.copy(affectnet_root / "images" / "0.jpg", good)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    samples = [Sample(str(tmp_path / n), 1) for n in ("truncated.jpg", "good.jpg", "text.jpg", "gone.jpg")]
    ds = AffectDataset(samples, 48, MEAN, STD, EXPRESSIONS)
    batches = list(DataLoader(ds, batch_size=2, collate_fn=collate_skip_bad))
    assert [b["n_bad"] for b in batches] == [1, 2] and batches[0]["image"].shape[0] == 1
    assert batches[1] == {"n_bad": 2, "batch_size": 0}  # nothing readable: only the counts
    assert ds.n_bad == 3
    # in a worker process too: the batch carries the count, the worker survives
    batches = list(DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate_skip_bad))
    assert batches[0]["n_bad"] == 3 and batches[0]["batch_size"] == 1
    assert any("truncated.jpg" in r.getMessage() for r in caplog.records)


def test_nan_targets_are_masked(affectnet_small):
    s = affectnet_small.samples[0]
    lnd = s.landmarks.copy()
    lnd[5, 0] = np.nan
    odd = Sample(path=s.path, expression=-1, valence=math.nan, arousal=0.3, landmarks=lnd,
                 aus=np.array([1.0, np.nan, 0.0], np.float32))
    item = AffectDataset([odd], 48, MEAN, STD, EXPRESSIONS, num_landmarks=68,
                         au_names=("AU1", "AU2", "AU4"))[0]
    assert item["expression"].item() == -1
    assert item["va_mask"].tolist() == [False, True] and item["va"].tolist() == pytest.approx([0.0, 0.3])
    assert not item["landmarks_mask"] and torch.isfinite(item["landmarks"]).all()
    assert item["aus_mask"].tolist() == [True, False, True] and item["aus"].tolist() == [1, 0, 0]


def test_labels_outside_the_run_label_list_are_rejected(affectnet_small):
    s = affectnet_small.samples[0]
    with pytest.raises(DataError, match="expression 8 is outside the 8 run labels"):
        AffectDataset([Sample(s.path, 8)], 48, MEAN, STD, EXPRESSIONS)
    with pytest.raises(DataError, match="2 AU values for 3"):
        AffectDataset([Sample(s.path, 1, aus=np.ones(2))], 48, MEAN, STD, EXPRESSIONS, au_names=("a", "b", "c"))
    with pytest.raises(DataError, match="class_mask"):
        AffectDataset([s], 48, MEAN, STD, EXPRESSIONS, class_mask=[True] * 7)


def test_mixed_dataset_keeps_each_part_s_masks(affectnet_small, fer2013_root):
    fer = load_fer2013_folders(fer2013_root, usage="PublicTest", limit=4)
    parts = [AffectDataset(affectnet_small.samples, 48, MEAN, STD, EXPRESSIONS, class_mask=affectnet_small.class_mask(EXPRESSIONS)),
             AffectDataset(fer.samples, 48, MEAN, STD, EXPRESSIONS, class_mask=fer.class_mask(EXPRESSIONS))]
    mixed = MixedDataset(parts)
    assert len(mixed) == 10
    a, f = mixed[1], mixed[8]
    assert a["class_mask"].all() and a["va_mask"].all()
    assert not f["class_mask"][EXPRESSIONS.index("Contempt")] and f["class_mask"].sum() == 7
    assert not f["va_mask"].any()
    assert f["index"].item() == 8 and mixed.samples[8] is fer.samples[2]
    with pytest.raises(DataError, match="different size"):
        MixedDataset([parts[0], AffectDataset(fer.samples, 64, MEAN, STD, EXPRESSIONS)])
