"""Training on a different label set than the loaders produce: a subset of
the canonical classes (e.g. 6 classes) or coarse groups (e.g. negative /
positive / surprise from `affect.labels.EMOTION_GROUPS`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from affect.datasets.records import DataError, Sample, is_canonical, label_members, norm_label
from affect.labels import canonical_name


def label_index_map(from_labels: Sequence[str], to_labels: Sequence[str],
                    groups: Mapping[str, Sequence[str]] | None = None) -> dict[int, int]:
    """{index in from_labels: index in to_labels}; labels with no target are left out.

    A from-label matches a to-label of the same name, else the to-label
    (class or group) whose members contain it.
    """
    members = [label_members(t, groups) for t in to_labels]
    for canon in {m for ms in members for m in ms}:
        owners = [t for t, ms in zip(to_labels, members, strict=True) if canon in ms]
        if len(owners) > 1:
            raise DataError(f"class {canon!r} belongs to several run labels: {owners}")
    out: dict[int, int] = {}
    for i, name in enumerate(from_labels):
        same = [j for j, t in enumerate(to_labels) if norm_label(t) == norm_label(name)]
        if same:
            out[i] = same[0]
            continue
        if not is_canonical(name):
            continue
        canon = canonical_name(name)
        hits = [j for j, m in enumerate(members) if canon in m]
        if hits:
            out[i] = hits[0]
    return out


def remap_labels(samples: Sequence[Sample], from_labels: Sequence[str], to_labels: Sequence[str],
                 groups: Mapping[str, Sequence[str]] | None = None,
                 drop_unmapped: bool = True) -> list[Sample]:
    """Copies of `samples` whose `expression` indexes `to_labels`.

    Samples of a class the run does not have are dropped (`drop_unmapped`) or
    kept with expression -1 so their other targets still train; samples
    without a label stay at -1.
    """
    mapping = label_index_map(from_labels, to_labels, groups)
    out = []
    for s in samples:
        if s.expression < 0:
            out.append(dataclasses.replace(s))
            continue
        if s.expression >= len(from_labels):
            raise DataError(f"{s.path}: expression {s.expression} is outside the label list {list(from_labels)}")
        new = mapping.get(s.expression, -1)
        if new < 0 and drop_unmapped:
            continue
        out.append(dataclasses.replace(s, expression=new, soft=_remap_soft(s.soft, mapping, len(to_labels))))
    return out


def _remap_soft(soft: np.ndarray | None, mapping: dict[int, int], n: int) -> np.ndarray | None:
    """A label distribution moved onto the run's labels (mass of unmapped classes dropped, the
    rest renormalised); None when nothing maps."""
    if soft is None:
        return None
    if len(soft) == n and all(mapping.get(i) == i for i in range(n)):
        return soft
    out = np.zeros(n, np.float32)
    for i, j in mapping.items():
        if i < len(soft):
            out[j] += soft[i]
    total = out.sum()
    return out / total if total > 0 else None


def align_aus(samples: Sequence[Sample], from_names: Sequence[str], to_names: Sequence[str]) -> list[Sample]:
    """Copies of `samples` whose `aus` follow `to_names`; AUs the source lacks
    become nan (masked), as do all AUs of samples without AU labels."""
    index = {n: i for i, n in enumerate(from_names)}
    out = []
    for s in samples:
        aus = np.full(len(to_names), math.nan, np.float32)
        if s.aus is not None:
            for j, name in enumerate(to_names):
                if name in index:
                    aus[j] = s.aus[index[name]]
        out.append(dataclasses.replace(s, aus=aus))
    return out
