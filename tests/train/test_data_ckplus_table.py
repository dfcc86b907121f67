"""The CK+ table layout (labels.csv + images/) on real files from ../shared/data/ckplus:
the target follows the label set, AUs come in FACS order, splits keep a person in one
part, and each malformed table stops with one line naming the file and the row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from affect.aus import AU_NAMES
from affect.datasets.loaders import load_ckplus, load_dataset
from affect.datasets.records import DataError
from affect.labels import EXPRESSIONS
from train.data import split_by_subject

GROUPS = ["negative", "positive", "surprise"]


def _rows(ckplus_root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(ckplus_root / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _subset(ckplus_root: Path, dest: Path, subjects: int = 6, edit=None) -> Path:
    """A small CK+ table of the first subjects' rows, its images linked to the real ones."""
    fields, rows = _rows(ckplus_root)
    keep = sorted({r["subject"] for r in rows})[:subjects]
    rows = [dict(r) for r in rows if r["subject"] in keep]
    if edit is not None:
        fields, rows = edit(fields, rows)
    dest.mkdir(parents=True)
    (dest / "images").symlink_to(ckplus_root / "images", target_is_directory=True)
    with open(dest / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dest


def test_target_follows_the_label_set_and_aus_come_in_facs_order(ckplus_root, tmp_path):
    root = _subset(ckplus_root, tmp_path / "ck")
    _, rows = _rows(root)
    by_file = {r["file"]: r for r in rows}
    emotions = load_dataset({"type": "ckplus", "root": str(root)})  # no labels: the emotion column
    assert emotions.label_set == EXPRESSIONS and emotions.au_names == AU_NAMES
    groups = load_dataset({"type": "ckplus", "root": str(root)}, labels=GROUPS)  # the group column
    assert groups.label_set == tuple(GROUPS)
    assert len(emotions) == len(groups) == len(rows)
    for e, g in zip(emotions.samples, groups.samples, strict=True):
        row = by_file[Path(e.path).name]
        assert EXPRESSIONS[e.expression] == {"sadness": "Sad", "anger": "Anger"}.get(row["emotion"],
                                                                                    row["emotion"].title())
        assert GROUPS[g.expression] == row["group"]
        assert e.aus.tolist() == [float(row[a]) for a in AU_NAMES]  # FACS order, from the AU columns
        assert e.subject == row["subject"]
    assert AU_NAMES[:3] == ("AU1", "AU2", "AU4") and AU_NAMES[-1] == "AU27"


def test_split_by_subject_keeps_each_person_in_one_part(ckplus_root):
    info = load_ckplus(ckplus_root, labels=GROUPS)
    parts = split_by_subject(info.samples, fractions=(0.7, 0.15, 0.15), seed=0)
    people = [{s.subject for s in part} for part in parts]
    assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
    assert sum(len(p) for p in parts) == len(info.samples)
    assert 0.6 < len(parts[0]) / len(info.samples) < 0.8


def _drop_column(fields, rows):
    return [f for f in fields if f != "AU12"], rows


def _bad_value(fields, rows):
    rows[4]["AU4"] = "2"
    return fields, rows


def _missing_image(fields, rows):
    rows[2]["file"] = "S999_001_00000001.png"
    return fields, rows


@pytest.mark.parametrize("edit, message", [
    (_drop_column, r"labels\.csv: missing column\(s\) \['AU12'\]"),
    (_bad_value, r"labels\.csv:6: AU4 is '2', expected 0 or 1"),
    (_missing_image, r"labels\.csv:4: image .*S999_001_00000001\.png not found"),
])
def test_a_malformed_table_stops_with_one_line_naming_file_and_row(ckplus_root, tmp_path, edit, message):
    root = _subset(ckplus_root, tmp_path / "ck", subjects=3, edit=edit)
    with pytest.raises(DataError, match=message) as err:
        load_dataset({"type": "ckplus", "root": str(root)})
    assert "\n" not in str(err.value) and str(root / "labels.csv") in str(err.value)


def test_labels_that_are_neither_classes_nor_groups_are_refused(ckplus_root, tmp_path):
    root = _subset(ckplus_root, tmp_path / "ck", subjects=2)
    with pytest.raises(DataError, match="neither expression classes nor the table's groups"):
        load_ckplus(root, labels=["calm", "busy"])
    assert np.isfinite(load_ckplus(root).samples[0].aus).all()


def test_stop_when_waits_for_every_target_and_au_scores_are_flat_scores():
    from train.fit import Progress, _stop_reason, flat_scores

    targets = {"stop_when": {"accuracy": 0.8, "au_binary_accuracy": 0.86}}
    assert _stop_reason(Progress(), {"accuracy": 0.95, "au_binary_accuracy": 0.80}, targets) is None
    assert "targets met" in _stop_reason(Progress(), {"accuracy": 0.85, "au_binary_accuracy": 0.9}, targets)
    scores = flat_scores({"expression": {"accuracy": 0.9, "macro_f1": 0.8},
                          "action_units": {"f1_macro": 0.5, "f1_micro": 0.7, "binary_accuracy": 0.88, "map": 0.6}})
    assert scores["au_binary_accuracy"] == 0.88 and scores["au_f1_macro"] == 0.5
    assert scores["score"] == np.mean([0.9, 0.8, 0.5])  # the AU macro-F1 counts in the mean score
