"""The blendshape → AU map on real CK+ faces: fitted, written, read back to the same
probabilities; the shipped file checked; a corrupt file is one line naming it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from affect.aus import AU_NAMES, DEFAULT_AU_MAP, AuMapError, load_au_map
from affect.files import sha256_of
from train.au_map import MAP_BLENDSHAPES, ckplus_faces, cross_validate, fit_and_write


@pytest.fixture(scope="module")
def small_ckplus(ckplus_root, face_model_path, tmp_path_factory) -> tuple[Path, Path]:
    """The peak frames of 12 subjects (a CK+ table of their own) and a blendshape cache."""
    dest = tmp_path_factory.mktemp("ck")
    with open(ckplus_root / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    keep = sorted({r["subject"] for r in rows})[:12]
    rows = [r for r in rows if r["subject"] in keep and r["peak"] == "1"]
    (dest / "images").symlink_to(ckplus_root / "images", target_is_directory=True)
    with open(dest / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dest, dest / "cache"


def test_fit_write_load_gives_the_same_probabilities(small_ckplus, face_model_path, tmp_path):
    root, cache = small_ckplus
    table = ckplus_faces(root, face_model_path, cache)
    assert table.rows.shape[1] == len(MAP_BLENDSHAPES) and table.targets.shape[1] == len(AU_NAMES)
    assert table.found.mean() > 0.9  # the landmarker finds the upscaled 48-px faces
    cv = cross_validate(table, k=3)
    assert 0.0 <= cv["found_faces"]["f1_micro"] <= 1.0 and len(set(cv["fold"])) == 3
    out = tmp_path / "map.json"
    fitted, digest = fit_and_write(table, out, cv)
    loaded = load_au_map(out, sha256=digest)
    assert loaded.au_names == AU_NAMES and loaded.blendshapes == MAP_BLENDSHAPES
    found = table.rows[table.found]
    np.testing.assert_allclose(loaded.predict(found), fitted.predict(found), rtol=0, atol=1e-12)
    probs = loaded.predict(found)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert np.isnan(loaded.predict(np.full((1, len(MAP_BLENDSHAPES)), np.nan))).all()  # no face: no AUs
    assert json.loads(out.read_text())["training"]["cross_validation"]["method"].startswith("GroupKFold")
    assert not out.read_bytes().startswith(b"\x80")  # JSON, never a pickle


def test_the_shipped_map_matches_its_recorded_sha256():
    m = load_au_map()
    assert m.au_names == AU_NAMES and len(m.blendshapes) == 51
    assert m.training["cross_validation"]["method"].startswith("GroupKFold")


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "wrong shape"])
def test_a_corrupt_map_file_is_one_line_naming_it(tmp_path, damage):
    path = tmp_path / "aus.json"
    shutil.copy(DEFAULT_AU_MAP, path)
    data = path.read_bytes()
    if damage == "flipped byte":
        path.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
        kwargs = {"sha256": sha256_of(DEFAULT_AU_MAP)}  # the recorded digest no longer matches
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
        kwargs = {}
    else:
        obj = json.loads(data)
        obj["coef"] = obj["coef"][:-1]
        path.write_text(json.dumps(obj))
        kwargs = {}
    with pytest.raises(AuMapError) as err:
        load_au_map(path, **kwargs)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
