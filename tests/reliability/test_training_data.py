"""Bad training data through `python -m train fit`: a clear line naming the
file, or the sample skipped and counted, never a traceback."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from reliability_helpers import TINY_FIT, tiny_affectnet

from train.__main__ import main as train_main

ONE_STEP = [*TINY_FIT, "--epochs", "1", "--max-steps", "1"]


def fit(capsys, data: str, run_dir, *extra: str) -> tuple[int, str, str]:
    code = train_main(["fit", "--data", data, "--run-dir", str(run_dir), *ONE_STEP, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("value, problem", [(-2, "expression code -2 is not an AffectNet code"),
                                            (float("nan"), "expression 'nan' is not a class code")])
def test_an_impossible_expression_label_names_its_file(tmp_path, capsys, value, problem):
    root, stems = tiny_affectnet(tmp_path / "affectnet")
    bad = root / "annotations" / f"{stems[3]}_exp.npy"
    np.save(bad, np.array(value))
    code, _, err = fit(capsys, f"affectnet:{root}", tmp_path / "run")
    assert code == 2 and err.startswith(f"error: {bad}: {problem}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing half-started


def test_a_no_expression_code_is_masked_and_a_corrupt_jpeg_is_skipped_and_counted(tmp_path, capsys, caplog):
    root, stems = tiny_affectnet(tmp_path / "affectnet")
    np.save(root / "annotations" / f"{stems[0]}_exp.npy", np.array(9))  # AffectNet 9 = "uncertain": unlabelled
    (root / "images" / f"{stems[1]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "images" / f"{stems[2]}.jpg").write_bytes((root / "images" / f"{stems[2]}.jpg").read_bytes()[:200])
    code, out, err = fit(capsys, f"affectnet:{root}", tmp_path / "run", "--epochs", "1", "--max-steps", "100")
    assert code == 0, err
    with open(tmp_path / "run" / "history.csv") as fh:
        [row] = list(csv.DictReader(fh))
    assert int(row["bad_images"]) >= 1  # counted, in train or val; the run went on
    assert "unreadable" in caplog.text


def test_a_missing_annotation_file_skips_that_face_with_a_warning(tmp_path, capsys, caplog):
    root, stems = tiny_affectnet(tmp_path / "affectnet")
    missing = root / "annotations" / f"{stems[5]}_val.npy"
    os.unlink(missing)
    code, out, err = fit(capsys, f"affectnet:{root}", tmp_path / "run")
    assert code == 0, err
    assert "skipped 1 sample(s) with a missing annotation file" in caplog.text and str(missing) in caplog.text
    assert "train 15 /" in out  # 23 of the 24 faces left, split 64/16/20


def test_an_empty_dataset_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = fit(capsys, f"affectnet:{tmp_path / 'empty'}", tmp_path / "run")
    assert code == 2 and err == f"error: {tmp_path / 'empty'}: no images/ folder (AffectNet layout: " \
                                "images/<id>.jpg, annotations/<id>_exp.npy)\n"


def test_an_empty_class_folder_leaves_the_other_classes_training(tmp_path, capsys, caplog):
    from reliability_helpers import SHARED

    src = SHARED / "data" / "affectnet96" / "happy"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    root = tmp_path / "folders"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()  # empty
    for p in sorted(src.glob("*"))[:10]:
        (root / "happy" / p.name).write_bytes(p.read_bytes())
    with caplog.at_level("WARNING"):
        code, out, err = fit(capsys, f"folders:{root}", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "run" / "last.pt").is_file()
    assert "class folder(s) ['sad'] hold no images" in caplog.text  # said, not silent
    (tmp_path / "only_empty" / "sad").mkdir(parents=True)
    code, _, err = fit(capsys, f"folders:{tmp_path / 'only_empty'}", tmp_path / "run2")
    assert code == 2 and "no images" in err and err.count("\n") == 1
