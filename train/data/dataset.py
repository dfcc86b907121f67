"""`AffectDataset`: samples → the item dict the fit loop and evaluation
consume (see docs/ARCHITECTURE.md), plus mixing and a collate that drops
unreadable images.

The eval path is exactly `affect.datasets.crops.eval_crop` (`to_rgb →
resize_square`, after `affect.crop.crop_face` for samples with a box) then
`affect.preprocess.normalise`, the same calls `prepare_batch` makes at run
time, so training and deployment agree.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, default_collate
from torchvision.transforms import RandomErasing

from affect.blendshapes import mirror_order
from affect.datasets.crops import crop_points, eval_crop, read_image
from affect.datasets.records import DataError, Sample
from affect.images import UnreadableImage
from affect.preprocess import normalise
from train.data.augment import FLIP_MAPS, AugmentConfig, augment_image
from train.data.crop_cache import CropCache

log = logging.getLogger(__name__)


class AffectDataset(Dataset):
    """Samples → dicts of tensors (`image`, `expression`, `class_mask`, `va`,
    `va_mask`, `landmarks`, `landmarks_mask`, `aus`, `aus_mask`, `index`, and
    `blendshapes` [B] when `blendshapes` names are given: the sample's scores,
    NaN without them); an unreadable image gives None (use `collate_skip_bad`).

    With `teacher`, items also carry `teacher` [C + 2]: the sample's
    `Sample.teacher` row (train.distill), NaN without one; with `va_prior`, `va_prior`
    [2]: `Sample.va_prior` (train.fit.attach_va_prior), NaN without one.

    In training, a flipped face's blendshapes swap left/right, and
    `blendshape_dropout` hides them (NaN) from that share of draws so the
    model also learns to read faces without them (the FaceDetector path).

    `samples[i].expression` must index `labels`; `aus` must follow `au_names`
    (see `remap_labels`, `align_aus`); `class_mask` (bool [C]) says which
    classes this dataset can have (`DatasetInfo.class_mask`).
    """

    def __init__(self, samples: Sequence[Sample], size: int, mean: Sequence[float], std: Sequence[float],
                 labels: Sequence[str], augment: AugmentConfig | None = None, num_landmarks: int = 0,
                 au_names: Sequence[str] = (), class_mask: Sequence[bool] | np.ndarray | None = None,
                 blendshapes: Sequence[str] = (), blendshape_dropout: float = 0.0,
                 teacher: bool = False, label_smoothing: float | None = None,
                 cache: CropCache | None = None, va_prior: bool = False) -> None:
        self.samples = list(samples)
        if cache is not None and len(cache.ok) != len(self.samples):
            raise DataError(f"crop cache {cache.path} holds {len(cache.ok)} faces for {len(self.samples)} samples")
        self.cache = cache
        # This dataset's label smoothing (noisy labels smoothed more); None = the run's.
        self.label_smoothing = math.nan if label_smoothing is None else float(label_smoothing)
        self.teacher = bool(teacher)
        self.va_prior = bool(va_prior)
        self.size, self.mean, self.std = int(size), list(mean), list(std)
        self.labels, self.au_names = list(labels), list(au_names)
        self.augment, self.num_landmarks = augment, int(num_landmarks)
        n = len(self.labels)
        mask = np.ones(n, bool) if class_mask is None else np.asarray(class_mask, bool)
        if mask.shape != (n,):
            raise DataError(f"class_mask has shape {mask.shape}, expected ({n},) for labels {self.labels}")
        self.class_mask = torch.from_numpy(mask.copy())
        self.blendshape_names = list(blendshapes)
        self._mirror = mirror_order(self.blendshape_names)
        if not 0.0 <= float(blendshape_dropout) <= 1.0:
            raise DataError(f"blendshape_dropout must be in [0, 1], got {blendshape_dropout}")
        self.blendshape_dropout = float(blendshape_dropout)
        self._check_samples()
        if augment is not None and augment.hflip and self.num_landmarks and self.num_landmarks not in FLIP_MAPS:
            raise DataError(f"hflip with {self.num_landmarks} landmarks: no left/right map (known: 68)")
        self._erasing = RandomErasing(p=augment.erasing, value=0) if augment and augment.erasing else None
        self.n_bad = 0  # unreadable images met by this process (workers count their own)

    def _check_samples(self) -> None:
        n, k, a = len(self.labels), self.num_landmarks, len(self.au_names)
        for s in self.samples:
            if not -1 <= s.expression < n:
                raise DataError(f"{s.path}: expression {s.expression} is outside the {n} run labels "
                                "(remap_labels first)")
            if k and s.landmarks is not None and np.asarray(s.landmarks).reshape(-1, 2).shape[0] != k:
                raise DataError(f"{s.path}: {np.asarray(s.landmarks).size // 2} landmarks, the model has {k}")
            if s.soft is not None and len(s.soft) != n:
                raise DataError(f"{s.path}: a label distribution of {len(s.soft)} classes for {n} run labels")
            if a and s.aus is not None and len(s.aus) != a:
                raise DataError(f"{s.path}: {len(s.aus)} AU values for {a} AU names (align_aus first)")
            b = len(self.blendshape_names)
            if b and s.blendshapes is not None and len(s.blendshapes) != b:
                raise DataError(f"{s.path}: {len(s.blendshapes)} blendshape scores for {b} names")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        s = self.samples[index]
        want_points = self.num_landmarks > 0 and s.landmarks is not None
        if self.cache is not None:  # decoded once (train.data.crop_cache)
            if not self.cache.ok[index]:
                self.n_bad += 1
                return None
            crop = np.array(self.cache.crops[index])
            h, w = (int(v) for v in self.cache.shapes[index])
            points = crop_points(s, h, w) if want_points else None
        else:
            try:
                image = read_image(s)
            except UnreadableImage as exc:
                self.n_bad += 1
                log.warning("skipping %s", exc)
                return None
            crop, points = eval_crop(image, s if want_points else _without_landmarks(s), self.size)
        flipped, rng = False, None
        if self.augment is not None:
            # Draw from torch's generator: seeded per DataLoader worker and by torch.manual_seed.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            crop, points, flipped = augment_image(crop, points, self.augment, rng)
        x = torch.from_numpy(normalise(crop, self.mean, self.std)[0])
        if self._erasing is not None:
            x = self._erasing(x)
        soft = (np.asarray(s.soft, np.float32) if s.soft is not None
                else np.full(len(self.labels), np.nan, np.float32))
        item = {"image": x, "expression": torch.tensor(s.expression, dtype=torch.int64),
                "class_mask": self.class_mask.clone(), **self._targets(s, points),
                "soft": torch.from_numpy(soft.copy()),
                "smoothing": torch.tensor(self.label_smoothing, dtype=torch.float32),
                "index": torch.tensor(index, dtype=torch.int64)}
        if self.blendshape_names:
            item["blendshapes"] = torch.from_numpy(self._blendshapes(s, flipped, rng))
        if self.teacher:  # class probabilities and valence/arousal are the same for the mirrored face
            row = s.teacher if s.teacher is not None else np.full(len(self.labels) + 2, np.nan, np.float32)
            item["teacher"] = torch.from_numpy(np.asarray(row, np.float32).copy())
        if self.va_prior:  # the label's valence/arousal: the same for the mirrored face
            prior = s.va_prior if s.va_prior is not None else np.full(2, np.nan, np.float32)
            item["va_prior"] = torch.from_numpy(np.asarray(prior, np.float32).copy())
        return item

    def _blendshapes(self, s: Sample, flipped: bool, rng: np.random.Generator | None) -> np.ndarray:
        if s.blendshapes is None or (rng is not None and rng.random() < self.blendshape_dropout):
            return np.full(len(self.blendshape_names), np.nan, np.float32)
        row = np.asarray(s.blendshapes, np.float32)
        return (row[self._mirror] if flipped else row).copy()

    def _targets(self, s: Sample, points: np.ndarray | None) -> dict[str, torch.Tensor]:
        va = np.array([s.valence, s.arousal], np.float32)
        va_mask = np.isfinite(va)
        lm = np.zeros(2 * self.num_landmarks, np.float32)
        lm_ok = points is not None and bool(np.isfinite(points).all())
        if lm_ok:
            lm = points.reshape(-1).astype(np.float32)
        aus = np.zeros(len(self.au_names), np.float32)
        if s.aus is not None and len(self.au_names):
            aus = np.asarray(s.aus, np.float32).copy()
        aus_mask = np.isfinite(aus) if s.aus is not None else np.zeros(len(self.au_names), bool)
        return {
            "va": torch.from_numpy(np.where(va_mask, va, 0).astype(np.float32)),
            "va_mask": torch.from_numpy(va_mask),
            "landmarks": torch.from_numpy(lm),
            "landmarks_mask": torch.tensor(lm_ok),
            "aus": torch.from_numpy(np.where(aus_mask, aus, 0).astype(np.float32)),
            "aus_mask": torch.from_numpy(aus_mask),
        }


def _without_landmarks(s: Sample) -> Sample:
    if s.landmarks is None:
        return s
    return dataclasses.replace(s, landmarks=None)


def collate_skip_bad(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """`default_collate` over the readable items; `n_bad` (int) counts the
    dropped ones and `batch_size` (int) the rest. With no readable item the
    dict holds only those two keys."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = default_collate(good) if good else {}
    out["n_bad"] = len(batch) - len(good)
    out["batch_size"] = len(good)
    return out


class MixedDataset(ConcatDataset):
    """Several AffectDatasets as one; each item keeps its own dataset's
    `class_mask` and target masks, and `index` is the position in `samples`
    (all parts' samples, in order)."""

    def __init__(self, datasets: Sequence[AffectDataset]) -> None:
        super().__init__(list(datasets))
        first = self.datasets[0]
        for d in self.datasets[1:]:
            for attr in ("size", "labels", "num_landmarks", "au_names", "blendshape_names"):
                if getattr(d, attr) != getattr(first, attr):
                    raise DataError(f"cannot mix datasets with different {attr}: "
                                    f"{getattr(first, attr)} vs {getattr(d, attr)}")
        self.samples: list[Sample] = [s for d in self.datasets for s in d.samples]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        if index < 0:
            index += len(self)
        item = super().__getitem__(index)
        if item is not None:
            item["index"] = torch.tensor(index, dtype=torch.int64)
        return item

    @property
    def n_bad(self) -> int:
        return sum(d.n_bad for d in self.datasets)
