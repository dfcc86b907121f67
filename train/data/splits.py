"""Deterministic train/val/test splits: stratified by expression, or
subject-disjoint (no person in two splits) and roughly stratified."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from affect.datasets.records import DataError, Sample

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.64, 0.16, 0.20)
SPLIT_NAMES = ("train", "val", "test")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, np.float64)
    if f.ndim != 1 or len(f) < 2 or (f <= 0).any() or not math.isclose(f.sum(), 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions {list(fractions)} must be 2 or more positive numbers summing to 1")
    return f


def _name(i: int) -> str:
    return SPLIT_NAMES[i] if i < len(SPLIT_NAMES) else f"split {i}"


def _finish(samples: Sequence[Sample], assignment: np.ndarray, k: int, why: str) -> tuple[list[Sample], ...]:
    out = tuple([samples[i] for i in np.flatnonzero(assignment == j)] for j in range(k))
    for j, part in enumerate(out):
        if not part:
            raise DataError(f"split {_name(j)!r} is empty: {why}")
    return out


def split_stratified(samples: Sequence[Sample], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                     seed: int = 0) -> tuple[list[Sample], ...]:
    """Split into len(fractions) parts (train, val, test), each with about the
    same class proportions; same seed, same split. Unlabelled samples (-1)
    are stratified as one more class. Samples keep their input order."""
    f = _check_fractions(fractions)
    n = len(samples)
    rng = np.random.default_rng(seed)
    y = np.array([s.expression for s in samples], dtype=np.int64)
    # Give each class's (shuffled) members evenly spaced ranks in [0, 1]; cutting
    # the rank order at the cumulative fractions then splits every class alike.
    rank = np.empty(n)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        rank[members] = (np.arange(len(members)) + rng.random()) / len(members)
    order = np.lexsort((rng.random(n), rank))
    cuts = np.round(np.cumsum(f)[:-1] * n).astype(int)
    assignment = np.empty(n, np.int64)
    for j, part in enumerate(np.split(order, cuts)):
        assignment[part] = j
    return _finish(samples, assignment, len(f), f"{n} samples are too few for fractions {list(fractions)}")


def split_by_subject(samples: Sequence[Sample], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                     seed: int = 0) -> tuple[list[Sample], ...]:
    """Subject-disjoint split: all of a person's images land in one part.

    Subjects are placed greedily (largest first, ties in seeded random order)
    where they bring the parts' sizes and class counts closest to the
    fractions. Samples without a subject count as a subject of their own.
    """
    f = _check_fractions(fractions)
    if not any(s.subject is not None for s in samples):
        raise DataError("no sample has a subject id: use split_stratified")
    loose = sum(s.subject is None for s in samples)
    if loose:
        log.warning("%d sample(s) without a subject id are split as subjects of their own", loose)
    rng = np.random.default_rng(seed)
    keys = [s.subject if s.subject is not None else f"\0{i}" for i, s in enumerate(samples)]
    subjects = sorted(set(keys))
    subjects = [subjects[i] for i in rng.permutation(len(subjects))]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    subjects.sort(key=lambda k: -len(members[k]))  # stable: ties keep the seeded order
    y = np.array([s.expression for s in samples], dtype=np.int64)
    classes = np.unique(y)
    k = len(f)
    counts = np.zeros((k, len(classes) + 1))  # per part: class counts, then size
    assignment = np.empty(len(samples), np.int64)
    for subject in subjects:
        idx = members[subject]
        add = np.append(np.array([(y[idx] == c).sum() for c in classes], float), len(idx))
        total = counts.sum(axis=0) + add
        costs = []
        for j in range(k):
            trial = counts.copy()
            trial[j] += add
            costs.append(np.abs(trial - f[:, None] * total).sum())
        best = int(np.argmin(costs))
        counts[best] += add
        assignment[idx] = best
    return _finish(samples, assignment, k,
                   f"{len(subjects)} subjects are too few for fractions {list(fractions)}")
