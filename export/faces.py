"""Face images for parity checks, INT8/TensorRT calibration and the benchmark.

Accepts an AffectNet-layout folder (`images/<id>.jpg` + `annotations/<id>_exp.npy`,
`_val.npy`, `_aro.npy`), class folders (`<dir>/<class>/*.jpg`, e.g. FER2013's
`PublicTest`), or a plain folder of face crops (no labels). The two labelled
layouts are read by `train.data`'s loaders, images by its `read_image`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from affect.labels import EXPRESSIONS, NAME_ALIASES
from affect.preprocess import prepare_batch, to_rgb
from affect.spec import ModelSpec
from export.common import ExportError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FaceSet:
    """RGB face crops with whatever labels the folder had (-1 / NaN where none)."""
    images: list[np.ndarray]
    expression: np.ndarray  # int64 [N], canonical index, -1 = no label
    valence: np.ndarray  # float32 [N], NaN = no label
    arousal: np.ndarray
    source: str
    skipped: int = 0
    generated: bool = False
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_expression(self) -> bool:
        return bool((self.expression >= 0).any())

    @property
    def has_va(self) -> bool:
        return bool(np.isfinite(self.valence).any())


def _read_rgb(path: Path) -> np.ndarray | None:
    from train.data.dataset import UnreadableImage, read_image
    from train.data.records import Sample

    try:
        return to_rgb(read_image(Sample(path=str(path))))
    except UnreadableImage:
        return None


def _listing(root: Path) -> tuple[str, list[tuple[Path, int, float, float]]]:
    """(layout, [(image path, expression, valence, arousal)]) for a folder, via train.data's loaders."""
    from train.data.loaders import load_affectnet, load_class_folders
    from train.data.records import DataError

    try:
        if (root / "images").is_dir():
            info = load_affectnet(root)
        elif any(d.is_dir() and d.name.lower() in NAME_ALIASES for d in root.iterdir()):
            info = load_class_folders(root)
        else:
            rows = [(p, -1, float("nan"), float("nan")) for p in sorted(root.rglob("*"))
                    if p.suffix.lower() in IMAGE_SUFFIXES]
            return "images", rows
    except DataError as exc:
        raise ExportError(str(exc)) from None
    if tuple(info.label_set) != tuple(EXPRESSIONS):
        raise ExportError(f"{root}: class folders map to {list(info.label_set)}, not the 8 expressions")
    return info.name, [(Path(s.path), s.expression, s.valence, s.arousal) for s in info.samples]


def _run_split_listing(path: Path) -> tuple[str, list[tuple[Path, int, float, float]]]:
    """The training part of a run's `splits.json`: calibration faces that are
    guaranteed not to be in the held-out part the model is evaluated on."""
    import json

    try:
        train = json.loads(path.read_text(encoding="utf-8"))["train"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a run's splits.json with a 'train' list ({exc})") from None
    return "run train split", [(Path(p), -1, float("nan"), float("nan")) for p in train]


def load_faces(path: str | os.PathLike, limit: int | None = None, seed: int = 0) -> FaceSet:
    """Read up to `limit` face crops (a seeded random subset, so classes mix)
    from `path`: a folder (AffectNet layout, class folders or plain images),
    one image, a `.txt` list of image paths, or a run's `splits.json` (its
    training part)."""
    root = Path(path)
    if not root.exists():
        raise ExportError(f"{root}: face image folder not found")
    if root.is_file() and root.suffix.lower() == ".json":
        layout, rows = _run_split_listing(root)
    elif root.is_file() and root.suffix.lower() == ".txt":  # one image path per line
        lines = root.read_text(encoding="utf-8").splitlines()
        layout, rows = "image list", [(Path(ln.strip()), -1, float("nan"), float("nan")) for ln in lines if ln.strip()]
    elif root.is_file():
        layout, rows = "images", [(root, -1, float("nan"), float("nan"))]
    else:
        layout, rows = _listing(root)
    if limit is not None and len(rows) > limit:
        pick = np.random.default_rng(seed).permutation(len(rows))
        # Draw extra candidates so a few unreadable files do not shrink the set.
        rows = [rows[i] for i in sorted(pick[: limit + max(8, limit // 10)])]
    images, keep, skipped = [], [], 0
    for row in rows:
        if limit is not None and len(images) >= limit:
            break
        image = _read_rgb(row[0])
        if image is None:
            skipped += 1
            continue
        images.append(image)
        keep.append(row)
    if not images:
        raise ExportError(f"{root}: no readable face images ({len(rows)} image files tried, {skipped} unreadable); "
                          "point --data at a folder of face crops or an AffectNet-layout dataset")
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", root, skipped)
    return FaceSet(images=images,
                   expression=np.array([r[1] for r in keep], np.int64),
                   valence=np.array([r[2] for r in keep], np.float32),
                   arousal=np.array([r[3] for r in keep], np.float32),
                   source=f"{root} ({layout})", skipped=skipped, paths=[str(r[0]) for r in keep])


def generated_faces(n: int = 8, size: int = 128, seed: int = 0) -> FaceSet:
    """Drawn face-like images, for a parity check when the user gives no data.

    They exercise the graph with image-like statistics, but they are not faces
    the model was trained on: callers say so in their log line.
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        img = np.full((size, size, 3), rng.integers(60, 200, 3), np.uint8)
        c = size // 2
        skin = tuple(int(v) for v in rng.integers(120, 240, 3))
        cv2.ellipse(img, (c, c), (int(size * 0.33), int(size * 0.42)), 0, 0, 360, skin, -1)
        for dx in (-1, 1):
            cv2.circle(img, (c + dx * size // 7, int(size * 0.42)), max(2, size // 20), (30, 30, 30), -1)
        mouth = int(rng.integers(0, 60))
        cv2.ellipse(img, (c, int(size * 0.68)), (size // 6, max(1, size // 16)), 0, mouth, 180 - mouth,
                    (120, 40, 40), max(1, size // 40))
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        images.append(img)
    nan = np.full(n, np.nan, np.float32)
    return FaceSet(images, np.full(n, -1, np.int64), nan, nan.copy(), "generated face-like images", generated=True)


def faces_or_generated(path: str | os.PathLike | None, limit: int, purpose: str) -> FaceSet:
    if path is not None:
        return load_faces(path, limit=limit)
    log.warning("%s: no face images given (--data); using %d generated face-like images instead — "
                "pass real face crops for a meaningful check", purpose, min(limit, 8))
    return generated_faces(min(limit, 8))


def batches(faces: FaceSet, spec: ModelSpec, batch_size: int) -> Iterator[np.ndarray]:
    """Model inputs [B, 3, S, S] via affect.preprocess, the one normalisation."""
    for start in range(0, len(faces), batch_size):
        yield prepare_batch(faces.images[start:start + batch_size], spec)
