"""Label remapping (subsets, groups), stratified and subject-disjoint splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from affect.datasets.records import DataError, DatasetInfo, Sample
from affect.labels import EMOTION_GROUPS, EXPRESSIONS
from train.data import align_aus, remap_labels, split_by_subject, split_stratified


def _samples(counts: dict[int, int], subjects: int | None = None, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for cls, n in counts.items():
        for i in range(n):
            subject = f"S{rng.integers(subjects):03d}" if subjects else None
            out.append(Sample(path=f"{cls}_{i}.jpg", expression=cls, subject=subject))
    return out


# --- remapping ---------------------------------------------------------------------------
def test_remap_to_emotion_groups():
    samples = [Sample(f"{n}.jpg", EXPRESSIONS.index(n)) for n in EXPRESSIONS] + [Sample("none.jpg", -1)]
    groups = list(EMOTION_GROUPS)  # negative, positive, surprise (no neutral)
    out = remap_labels(samples, EXPRESSIONS, groups)
    got = {s.path: (groups[s.expression] if s.expression >= 0 else None) for s in out}
    assert got == {"Happy.jpg": "positive", "Surprise.jpg": "surprise", "Sad.jpg": "negative",
                   "Fear.jpg": "negative", "Disgust.jpg": "negative", "Anger.jpg": "negative",
                   "Contempt.jpg": "negative", "none.jpg": None}  # Neutral dropped, unlabelled kept
    kept = remap_labels(samples, EXPRESSIONS, groups, drop_unmapped=False)
    assert len(kept) == 9 and next(s for s in kept if s.path == "Neutral.jpg").expression == -1
    assert samples[1].expression == 1  # inputs are not modified


def test_remap_to_six_classes_and_class_mask():
    six = ["Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger"]
    samples = [Sample(f"{n}.jpg", EXPRESSIONS.index(n)) for n in EXPRESSIONS]
    out = remap_labels(samples, EXPRESSIONS, six)
    assert [six[s.expression] for s in out] == six and len(out) == 6
    fer_like = DatasetInfo("x", [], labels=("Anger", "Happy", "Neutral"))
    assert fer_like.class_mask(six).tolist() == [True, False, False, False, False, True]
    assert fer_like.class_mask(list(EMOTION_GROUPS)).tolist() == [True, True, False]
    with pytest.raises(DataError, match="outside the label list"):
        remap_labels([Sample("bad.jpg", 12)], EXPRESSIONS, six)
    with pytest.raises(DataError, match="several run labels"):
        remap_labels(samples, EXPRESSIONS, ["Happy", "positive"])


def test_align_aus_by_name_masks_what_the_source_lacks():
    s = [Sample("a.jpg", aus=np.array([1.0, 0.0], np.float32)), Sample("b.jpg")]
    out = align_aus(s, ["AU1", "AU12"], ["AU12", "AU4", "AU1"])
    np.testing.assert_array_equal(out[0].aus, [0.0, np.nan, 1.0])
    assert np.isnan(out[1].aus).all()


# --- splits ------------------------------------------------------------------------------
def test_split_stratified_is_deterministic_complete_and_stratified():
    samples = _samples({0: 100, 1: 50, 3: 25, 7: 9, -1: 20})
    train, val, test = split_stratified(samples, seed=3)
    assert len(train) + len(val) + len(test) == len(samples)
    assert {s.path for s in train} | {s.path for s in val} | {s.path for s in test} == {s.path for s in samples}
    assert not ({s.path for s in train} & {s.path for s in test})
    assert abs(len(train) - 0.64 * len(samples)) <= 1 and abs(len(test) - 0.20 * len(samples)) <= 1
    for part, frac in ((train, 0.64), (val, 0.16), (test, 0.20)):
        counts = Counter(s.expression for s in part)
        for cls, n in {0: 100, 1: 50, 3: 25, 7: 9}.items():
            assert abs(counts[cls] - frac * n) <= 1.5, (cls, counts[cls], frac * n)
    again = split_stratified(samples, seed=3)
    assert [s.path for s in again[1]] == [s.path for s in val]
    assert [s.path for s in split_stratified(samples, seed=4)[1]] != [s.path for s in val]


def test_split_stratified_rejects_empty_splits_and_bad_fractions():
    with pytest.raises(DataError, match="'val' is empty: 3 samples"):
        split_stratified(_samples({0: 3}))
    with pytest.raises(DataError, match="summing to 1"):
        split_stratified(_samples({0: 30}), fractions=(0.5, 0.2))
    train, test = split_stratified(_samples({0: 30, 1: 10}), fractions=(0.75, 0.25))
    assert len(train) == 30 and len(test) == 10
    assert abs(Counter(s.expression for s in test)[1] - 2.5) <= 0.5


def test_split_by_subject_is_subject_disjoint_and_roughly_stratified():
    samples = _samples({0: 120, 1: 80, 2: 60, 5: 40}, subjects=25)
    parts = split_by_subject(samples, seed=1)
    subjects = [{s.subject for s in p} for p in parts]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    assert sum(len(p) for p in parts) == len(samples)
    for part, frac in zip(parts, (0.64, 0.16, 0.20), strict=True):
        assert abs(len(part) / len(samples) - frac) < 0.06
        assert {s.expression for s in part} == {0, 1, 2, 5}
    again = split_by_subject(samples, seed=1)
    assert [[s.path for s in p] for p in again] == [[s.path for s in p] for p in parts]


def test_split_by_subject_needs_subjects_and_enough_of_them():
    with pytest.raises(DataError, match="no sample has a subject"):
        split_by_subject(_samples({0: 20}))
    with pytest.raises(DataError, match="2 subjects are too few"):
        split_by_subject(_samples({0: 20, 1: 20}, subjects=2))
