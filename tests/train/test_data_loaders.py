"""Loaders on real files: AffectNet (folder + official CSV), FER2013 (CSV +
folders), CK+ with FACS, class folders with a mapping, and the front door."""

from __future__ import annotations

import csv
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from affect.crop import box_from_points, box_from_xywh
from affect.datasets.loaders import (
    load_affectnet,
    load_affectnet_csv,
    load_ckplus,
    load_class_folders,
    load_dataset,
    load_fer2013_csv,
    load_fer2013_folders,
)
from affect.datasets.records import DataError
from affect.labels import EXPRESSIONS, FER2013_CLASSES
from train.data import remap_labels


def _fer_images(fer2013_root: Path, cls: str, n: int, usage: str = "PublicTest") -> list[Path]:
    return sorted((fer2013_root / usage / cls).glob("*.jpg"))[:n]


def _affectnet_copy(affectnet_root: Path, dest: Path, ids: list[str]) -> Path:
    """A small AffectNet-layout tree with real images and annotations."""
    (dest / "images").mkdir(parents=True)
    (dest / "annotations").mkdir()
    for i in ids:
        shutil.copy(affectnet_root / "images" / f"{i}.jpg", dest / "images" / f"{i}.jpg")
        for k in ("exp", "val", "aro", "lnd"):
            shutil.copy(affectnet_root / "annotations" / f"{i}_{k}.npy", dest / "annotations")
    return dest


def _save_str(path: Path, value: str) -> None:
    np.save(path, np.array(value))  # AffectNet stores numpy unicode strings


# --- AffectNet ---------------------------------------------------------------------------
def test_affectnet_limit_reads_real_annotations(affectnet_root):
    info = load_affectnet(affectnet_root, limit=40)
    assert len(info) == 40 and info.has_va and info.has_landmarks
    assert info.labels == EXPRESSIONS and info.label_set == EXPRESSIONS
    assert len({s.expression for s in info.samples}) >= 5  # the subset is spread over the ids
    s = info.samples[7]
    stem = Path(s.path).stem
    ann = affectnet_root / "annotations"
    assert s.expression == int(np.load(ann / f"{stem}_exp.npy").item())
    assert s.valence == pytest.approx(float(np.load(ann / f"{stem}_val.npy").item()))
    assert s.arousal == pytest.approx(float(np.load(ann / f"{stem}_aro.npy").item()))
    assert s.landmarks.shape == (68, 2)
    np.testing.assert_allclose(s.landmarks.ravel(), np.load(ann / f"{stem}_lnd.npy"), rtol=1e-6)
    assert load_affectnet(affectnet_root, limit=40).samples[7].path == s.path  # deterministic subset


def test_affectnet_masks_non_expression_codes_and_missing_va(affectnet_root, tmp_path, caplog):
    root = _affectnet_copy(affectnet_root, tmp_path / "an", ["0", "100", "1001", "1002"])
    ann = root / "annotations"
    _save_str(ann / "0_exp.npy", "9")       # uncertain, and no valence/arousal: nothing to learn
    _save_str(ann / "0_val.npy", "-2")
    _save_str(ann / "0_aro.npy", "-2")
    _save_str(ann / "100_exp.npy", "10")    # no-face code but valid valence/arousal: kept, masked
    _save_str(ann / "1001_val.npy", "-2")   # valence missing only
    (ann / "1002_aro.npy").unlink()         # a missing annotation file
    with caplog.at_level(logging.WARNING):
        info = load_affectnet(root)
    by_id = {Path(s.path).stem: s for s in info.samples}
    assert sorted(by_id) == ["100", "1001"]
    assert by_id["100"].expression == -1 and not math.isnan(by_id["100"].valence)
    assert math.isnan(by_id["1001"].valence) and not math.isnan(by_id["1001"].arousal)
    assert info.skipped == {"missing_annotation": 1, "no_target": 1}
    missing_lines = [r.getMessage() for r in caplog.records if "missing annotation" in r.getMessage()]
    assert len(missing_lines) == 1 and "1002_aro.npy" in missing_lines[0]


def test_affectnet_unknown_expression_code_names_the_file(affectnet_root, tmp_path):
    root = _affectnet_copy(affectnet_root, tmp_path / "an", ["0"])
    _save_str(root / "annotations" / "0_exp.npy", "12")
    with pytest.raises(DataError, match=r"0_exp\.npy.*code 12"):
        load_affectnet(root)


def _write_affectnet_csv(path: Path, rows: list[dict]) -> None:
    cols = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
            "facial_landmarks", "expression", "valence", "arousal"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def test_affectnet_csv_crops_the_face_box_by_the_rule(affectnet_root, tmp_path):
    lnd = np.load(affectnet_root / "annotations" / "0_lnd.npy").reshape(68, 2)
    sub = tmp_path / "imgs" / "101"
    sub.mkdir(parents=True)
    shutil.copy(affectnet_root / "images" / "0.jpg", sub / "orig.jpg")  # the 224 image plays the original
    row = {"subDirectory_filePath": "101/orig.jpg", "face_x": 40, "face_y": 50, "face_width": 120,
           "face_height": 130, "facial_landmarks": ";".join(f"{v:.3f}" for v in lnd.ravel()),
           "expression": 3, "valence": 0.25, "arousal": -2}
    rows = [row, {**row, "subDirectory_filePath": "101/gone.jpg"},
            {**row, "expression": 8, "valence": -2}]
    csv_path = tmp_path / "training.csv"
    _write_affectnet_csv(csv_path, rows)
    info = load_affectnet_csv(csv_path, tmp_path / "imgs")
    assert len(info) == 1 and info.skipped == {"missing_image": 1, "no_target": 1}
    s = info.samples[0]
    assert s.expression == EXPRESSIONS.index("Surprise") and s.valence == 0.25 and math.isnan(s.arousal)
    assert s.box == pytest.approx(box_from_xywh(40, 50, 120, 130, {"method": "box", "scale": 1.0}).as_xywh())
    np.testing.assert_allclose(s.landmarks, lnd, atol=1e-3)
    # the model's crop rule decides the crop: a landmark box around the points
    rule = {"method": "landmark_box", "scale": 1.25}
    s2 = load_affectnet_csv(csv_path, tmp_path / "imgs", crop_rule=rule).samples[0]
    assert s2.box == pytest.approx(box_from_points(lnd, rule).as_xywh(), abs=1e-2)
    via_cfg = load_dataset({"type": "affectnet_csv", "root": str(tmp_path / "imgs"), "csv": str(csv_path)})
    assert [x.path for x in via_cfg.samples] == [s.path]


def test_affectnet_csv_without_columns_is_rejected(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("path,label\na.jpg,1\n")
    with pytest.raises(DataError, match=r"x\.csv.*missing column"):
        load_affectnet_csv(bad)


# --- FER2013 -----------------------------------------------------------------------------
def _fer_csv(path: Path, rows: list[tuple[int, Path, str]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for code, img, usage in rows:
            pixels = np.asarray(Image.open(img).convert("L"))
            w.writerow([code, " ".join(map(str, pixels.ravel())), usage])


def test_fer2013_csv_codes_and_usage_filter(fer2013_root, tmp_path):
    angry, happy, neutral = (_fer_images(fer2013_root, c, 2) for c in ("angry", "happy", "neutral"))
    csv_path = tmp_path / "fer2013.csv"
    _fer_csv(csv_path, [(0, angry[0], "Training"), (3, happy[0], "Training"), (6, neutral[0], "PublicTest"),
                        (0, angry[1], "PublicTest"), (3, happy[1], "PrivateTest")])
    info = load_fer2013_csv(csv_path, usage="PublicTest")
    assert [EXPRESSIONS[s.expression] for s in info.samples] == ["Neutral", "Anger"]
    assert info.labels == FER2013_CLASSES and not info.has_va
    np.testing.assert_array_equal(info.samples[1].pixels, np.asarray(Image.open(angry[1]).convert("L")))
    assert len(load_fer2013_csv(csv_path)) == 5
    assert len(load_fer2013_csv(csv_path, usage=["Training", "PrivateTest"])) == 3
    with pytest.raises(DataError, match="no rows with Usage"):
        load_fer2013_csv(csv_path, usage="Validation")
    via_cfg = load_dataset({"type": "fer2013_csv", "root": str(csv_path), "usage": "PublicTest"})
    assert [s.path for s in via_cfg.samples] == [s.path for s in info.samples]


def test_fer2013_csv_bad_code_names_the_line(fer2013_root, tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    _fer_csv(csv_path, [(3, _fer_images(fer2013_root, "happy", 1)[0], "Training"),
                        (7, _fer_images(fer2013_root, "sad", 1)[0], "Training")])
    with pytest.raises(DataError, match=r"fer2013\.csv:3: emotion code 7"):
        load_fer2013_csv(csv_path)


def test_fer2013_folders_keep_both_files_of_a_duplicated_name(fer2013_root):
    info = load_fer2013_folders(fer2013_root, usage="Training")
    assert len(info) == sum(1 for _ in (fer2013_root / "Training").glob("*/*.jpg"))
    twins = [s for s in info.samples if Path(s.path).name == "Training_52789098.jpg"]
    assert len(twins) == 2 and twins[0].path != twins[1].path
    assert {EXPRESSIONS[s.expression] for s in twins} == {"Neutral", "Surprise"}


def test_fer2013_folders_limit_covers_every_class(fer2013_root):
    info = load_fer2013_folders(fer2013_root, usage="PublicTest", limit=70)
    assert len(info) == 70
    assert {EXPRESSIONS[s.expression] for s in info.samples} == set(FER2013_CLASSES)
    assert info.class_mask(EXPRESSIONS).tolist() == [True] * 7 + [False]  # no Contempt in FER2013


# --- CK+ ---------------------------------------------------------------------------------
def _ckplus_tree(fer2013_root: Path, root: Path) -> Path:
    """CK+48-style folders of real FER images renamed with subject/sequence/frame."""
    plan = {"anger": ["S005_001_00000011", "S005_001_00000012"],
            "happy": ["S010_002_00000007", "S010_002_00000008"],
            "sadness": ["S011_004_00000020"], "surprise": ["S022_001_00000030"]}
    src = {"anger": "angry", "happy": "happy", "sadness": "sad", "surprise": "surprise"}
    for cls, names in plan.items():
        (root / cls).mkdir(parents=True)
        for name, img in zip(names, _fer_images(fer2013_root, src[cls], len(names)), strict=True):
            Image.open(img).save(root / cls / f"{name}.png")
    return root


def _facs(facs: Path, name: str, lines: str) -> None:
    subject, seq, _ = name.split("_")
    (facs / subject / seq).mkdir(parents=True, exist_ok=True)
    (facs / subject / seq / f"{name}_facs.txt").write_text(lines)


def test_ckplus_subjects_and_facs_action_units(fer2013_root, tmp_path):
    root = _ckplus_tree(fer2013_root, tmp_path / "ck")
    facs = tmp_path / "FACS"
    _facs(facs, "S005_001_00000012", "   4.0000000e+00   3.0000000e+00\n   1.7000000e+01   0.0000000e+00\n")
    _facs(facs, "S010_002_00000008", "   6.0000000e+00   2.0000000e+00\n   1.2000000e+01   4.0000000e+00\n\n")
    info = load_ckplus(root, facs_root=facs)
    assert info.au_names == ("AU4", "AU6", "AU12", "AU17")  # numeric, not string, order
    assert set(info.labels) == {"Anger", "Happy", "Sad", "Surprise"}
    by_name = {Path(s.path).stem: s for s in info.samples}
    assert by_name["S005_001_00000011"].subject == "S005"
    assert by_name["S011_004_00000020"].expression == EXPRESSIONS.index("Sad")
    # the sequence's peak-frame coding applies to its other CK+48 frames too
    assert by_name["S005_001_00000011"].aus.tolist() == [1, 0, 0, 1]
    assert by_name["S010_002_00000008"].aus.tolist() == [0, 1, 1, 0]
    assert by_name["S022_001_00000030"].aus is None  # no FACS file: masked, not "all absent"
    assert load_dataset({"type": "ckplus", "root": str(root), "facs": str(facs)}).au_names == info.au_names
    exact_only = load_ckplus(root, facs_root=facs, facs_per_sequence=False)
    assert {Path(s.path).stem: s for s in exact_only.samples}["S005_001_00000011"].aus is None


def test_ckplus_malformed_facs_line_names_the_file(fer2013_root, tmp_path):
    root = _ckplus_tree(fer2013_root, tmp_path / "ck")
    _facs(tmp_path / "FACS", "S005_001_00000012", "AU4 strong\n")
    with pytest.raises(DataError, match=r"S005_001_00000012_facs\.txt:1"):
        load_ckplus(root, facs_root=tmp_path / "FACS")


# --- any class folders -------------------------------------------------------------------
def _folders(fer2013_root: Path, root: Path, plan: dict[str, str]) -> Path:
    for folder, src in plan.items():
        (root / folder).mkdir(parents=True)
        for img in _fer_images(fer2013_root, src, 3):
            shutil.copy(img, root / folder)
    return root


def test_class_folders_with_a_group_mapping(fer2013_root, tmp_path):
    root = _folders(fer2013_root, tmp_path / "f", {"joy": "happy", "mad": "angry", "shock": "surprise",
                                                    "misc": "neutral"})
    info = load_class_folders(root, mapping={"joy": "positive", "mad": "negative", "shock": "surprise",
                                             "misc": None})
    assert len(info) == 9 and info.label_set == ("positive", "negative", "Surprise")
    groups = ["negative", "positive", "surprise"]
    remapped = remap_labels(info.samples, info.label_set, groups)
    by_folder = {Path(s.path).parent.name: groups[s.expression] for s in remapped}
    assert by_folder == {"joy": "positive", "mad": "negative", "shock": "surprise"}
    assert info.class_mask(groups).all() and info.class_mask(EXPRESSIONS)[EXPRESSIONS.index("Surprise")]


def test_class_folders_reject_unknown_names(fer2013_root, tmp_path):
    root = _folders(fer2013_root, tmp_path / "f", {"happy": "happy", "stuff": "sad"})
    with pytest.raises(DataError, match="stuff"):
        load_class_folders(root)
    with pytest.raises(DataError, match="hapy"):
        load_class_folders(root, mapping={"happy": "hapy"})
    with pytest.raises(DataError, match="nothere"):
        load_class_folders(root, mapping={"nothere": "Happy"})
    info = load_class_folders(root, mapping={"happy": "Happy", "stuff": "sadness"})
    assert info.label_set == EXPRESSIONS and {EXPRESSIONS[s.expression] for s in info.samples} == {"Happy", "Sad"}


# --- front door --------------------------------------------------------------------------
def test_load_dataset_dispatches_and_names_bad_configs(fer2013_root, affectnet_root, tmp_path):
    info = load_dataset({"type": "fer2013", "root": str(fer2013_root), "usage": "PublicTest",
                         "limit": 14, "weight": 2.5, "name": "fer_small"})
    assert len(info) == 14 and info.weight == 2.5 and info.name == "fer_small"
    assert len(load_dataset({"type": "affectnet", "root": affectnet_root, "limit": 5})) == 5
    with pytest.raises(DataError, match="'imagenet' is unknown"):
        load_dataset({"type": "imagenet", "root": "x"})
    with pytest.raises(DataError, match="nowhere.*not found"):
        load_dataset({"type": "fer2013", "root": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="'root' is missing"):
        load_dataset({"type": "ckplus"})
    with pytest.raises(DataError, match="limt"):
        load_dataset({"type": "affectnet", "root": affectnet_root, "limt": 5})


def test_fer2013_config_root_may_be_the_dataset_or_one_usage_folder(fer2013_root):
    whole = load_dataset({"type": "fer2013", "root": str(fer2013_root), "limit": 30})
    assert all("/Training/" in s.path for s in whole.samples)  # the dataset root: Training by default
    public = load_dataset({"type": "fer2013", "root": str(fer2013_root / "PublicTest")})
    assert len(public) == sum(1 for _ in (fer2013_root / "PublicTest").glob("*/*.jpg"))
    assert {EXPRESSIONS[s.expression] for s in public.samples} == set(EXPRESSIONS) - {"Contempt"}
