"""What a loader produces: one `Sample` per face image and a `DatasetInfo`
describing the dataset as a whole (which classes and targets it can have)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from affect.labels import EMOTION_GROUPS, EXPRESSIONS, canonical_name

NAN = math.nan


class DataError(ValueError):
    """A dataset, file or configuration that cannot be read as asked; the
    message is one line naming the file (or key) and the problem."""


@dataclass
class Sample:
    """One face image and its targets; missing targets are -1 / nan / None.

    `expression` indexes the label list of the DatasetInfo it came from
    (canonical `affect.labels.EXPRESSIONS` for every built-in loader) and, after
    `remap_labels`, the run's label list.
    """
    path: str
    expression: int = -1
    valence: float = NAN
    arousal: float = NAN
    landmarks: np.ndarray | None = None  # (K, 2) float, pixels of the source image
    aus: np.ndarray | None = None  # (A,) float 0/1 in DatasetInfo.au_names order; nan = unknown
    subject: str | None = None
    source: str = ""  # dataset name
    # Square crop (x, y, side, side) in source pixels, already expanded by the
    # crop rule; None = the file is the face crop already.
    box: tuple[float, float, float, float] | None = None
    angle: float = 0.0  # roll (degrees) of `box`, from an aligned crop rule
    pixels: np.ndarray | None = None  # HxW(x3) uint8 held in memory (FER2013 CSV rows)
    blendshapes: np.ndarray | None = None  # (B,) MediaPipe scores (affect.datasets.blendshapes); NaN = no face
    teacher: np.ndarray | None = None  # (C + 2,) a teacher's class probabilities + valence/arousal (train.distill)
    # (C,) a label distribution over the DatasetInfo's label_set (FER+ votes), summing to 1; the
    # loss trains on it instead of the one-hot `expression` (which stays the majority, for metrics).
    soft: np.ndarray | None = None
    # (2,) valence/arousal from the face's expression label, for a face without its own
    # (train.data.assembly.attach_va_prior, `loss.va_prior`); None = no prior.
    va_prior: np.ndarray | None = None


@dataclass
class DatasetInfo:
    name: str
    samples: list[Sample]
    labels: tuple[str, ...]  # names of the classes this dataset can have
    has_va: bool = False
    has_landmarks: bool = False
    au_names: tuple[str, ...] = ()
    label_set: tuple[str, ...] = EXPRESSIONS  # the list Sample.expression indexes
    weight: float = 1.0  # share of draws when mixed (build_sampler)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def __len__(self) -> int:
        return len(self.samples)

    def class_mask(self, run_labels: Sequence[str],
                   groups: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """bool [len(run_labels)]: run classes this dataset can have (a group
        counts when the dataset has any of its members)."""
        present = {norm_label(x) for x in self.labels}
        present |= {norm_label(canonical_name(x)) for x in self.labels if is_canonical(x)}
        out = []
        for label in run_labels:
            members = label_members(label, groups)
            out.append(norm_label(label) in present or any(norm_label(m) in present for m in members))
        return np.array(out, dtype=bool)


def norm_label(name: str) -> str:
    return name.strip().lower()


def is_canonical(name: str) -> bool:
    try:
        canonical_name(name)
    except ValueError:
        return False
    return True


def label_members(label: str, groups: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """Canonical class names a run label stands for: a group's members, or
    the class itself. Raises DataError for a name that is neither."""
    groups = EMOTION_GROUPS if groups is None else groups
    for key, members in groups.items():
        if norm_label(key) == norm_label(label):
            return tuple(canonical_name(m) for m in members)
    if is_canonical(label):
        return (canonical_name(label),)
    raise DataError(f"label {label!r} is neither an expression class nor a group ({sorted(groups)})")
