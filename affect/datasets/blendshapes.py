"""MediaPipe blendshapes for dataset samples, computed once and cached.

A model that takes blendshapes (`model.blendshapes: true`) is trained and
evaluated on the scores MediaPipe's FaceLandmarker gives for each sample's
face crop (`affect.blendshapes.CropBlendshapes`, the same landmarker the
camera runs). Computing them costs ~15 ms per face on one core, so they are
cached per sample in an `.npz` under the cache folder: a second run, an
evaluation or a resumed fit reads them back.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from affect.blendshapes import LANDMARKER_CROP, CropBlendshapes
from affect.datasets.crops import eval_crop, read_image
from affect.datasets.records import DataError, Sample
from affect.files import atomic_path, cache_root
from affect.images import UnreadableImage

log = logging.getLogger(__name__)


# The one cache root (`$AFFECTCAM_CACHE`, …) under its old name: per-sample tables of
# blendshapes here, of teacher outputs in train.distill.
default_cache_dir = cache_root


def sample_key(sample: Sample) -> str:
    """One face: the file, and the box where a file holds several faces."""
    return sample.path if sample.box is None else f"{sample.path}@{','.join(f'{v:.1f}' for v in sample.box)}"


def _cache_file(cache_dir: Path, names: Sequence[str], face_model: Path) -> Path:
    # Scores depend on the landmarker and the crop side, not on the run: one file per pair.
    tag = hashlib.sha1(f"{face_model.name}|{os.path.getsize(face_model)}|{LANDMARKER_CROP}|"
                       f"{','.join(names)}".encode()).hexdigest()[:12]
    return cache_dir / f"blendshapes-{tag}.npz"


def read_rows(path: Path) -> dict[str, np.ndarray]:
    """A per-sample table {sample_key: float32 row} written by `write_rows`; {} when
    absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return dict(zip(data["keys"].tolist(), data["rows"]))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: unreadable cache (%s); recomputing", path, exc)
        return {}


def write_rows(path: Path, table: dict[str, np.ndarray]) -> None:
    keys = list(table)
    # A temporary file of its own, then an atomic rename: two fits started together
    # (bench/default_model.sh) may both write the cache, and readers never see half a file.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, keys=np.array(keys, dtype=str),
                 rows=np.stack([table[k] for k in keys]).astype(np.float32) if keys
                 else np.zeros((0, 0), np.float32))


def attach_blendshapes(samples: Sequence[Sample], names: Sequence[str], face_model: str | os.PathLike,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, int]:
    """Set `sample.blendshapes` (float32 [B], NaN where no face was found or the
    image is unreadable) on every sample; returns counts {faces, found, computed}."""
    face_model = Path(face_model)
    if not face_model.is_file():
        raise DataError(f"{face_model}: MediaPipe face model not found (needed for blendshapes)")
    cache = _cache_file(Path(cache_dir) if cache_dir else default_cache_dir("blendshapes"), names, face_model)
    table = read_rows(cache)
    todo = [s for s in samples if sample_key(s) not in table]
    if todo:
        with CropBlendshapes(face_model) as landmarker:
            for i, s in enumerate(tqdm(todo, desc="blendshapes", disable=not progress, leave=False)):
                try:
                    crop, _ = eval_crop(read_image(s), s, LANDMARKER_CROP)
                    table[sample_key(s)] = landmarker.rows([crop], names)[0]
                except UnreadableImage:
                    table[sample_key(s)] = np.full(len(names), np.nan, np.float32)
                if (i + 1) % 5000 == 0:  # a kill loses at most a few minutes of work
                    write_rows(cache, table)
        write_rows(cache, table)
    found = 0
    for s in samples:
        s.blendshapes = np.asarray(table[sample_key(s)], np.float32)
        found += bool(np.isfinite(s.blendshapes).all())
    if samples and found < 0.5 * len(samples):
        log.warning("blendshapes: the landmarker found faces in only %d of %d samples", found, len(samples))
    return {"faces": len(samples), "found": found, "computed": len(todo)}
