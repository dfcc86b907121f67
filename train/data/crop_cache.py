"""Every face decoded, cropped and resized once: a uint8 array on disk that
epochs (and DataLoader workers, through a shared memory map) read instead of
re-decoding tens of thousands of JPEGs.

A cache file holds one dataset part at one input size. Its name carries a
digest of what it was made from (each file's path, size and modification
time, the crop box, the size), so a changed, added or removed source file
gives a new digest and the part is decoded again; the stale file of the same
part is removed then. Unreadable images are marked, counted and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from affect.datasets.crops import eval_crop, read_image
from affect.datasets.records import Sample
from affect.images import UnreadableImage

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class CropCache:
    """`crops[i]`: sample i's S x S RGB eval crop (uint8); `shapes[i]`: the decoded
    image's (height, width), for landmark coordinates; `ok[i]`: False if unreadable."""
    crops: np.ndarray
    shapes: np.ndarray
    ok: np.ndarray
    path: Path

    @property
    def n_bad(self) -> int:
        return int((~self.ok).sum())


def _stat_token(s: Sample) -> str:
    if s.pixels is not None:  # in-memory pixels (FER2013 CSV rows): the pixels are the source
        return hashlib.sha1(np.ascontiguousarray(s.pixels).tobytes()).hexdigest()
    try:
        st = os.stat(s.path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cache_digest(samples: Sequence[Sample], size: int) -> str:
    """Digest of what the crops are made from: any change in a source file, the list, a box
    or the size changes it."""
    h = hashlib.sha1(f"v{CACHE_VERSION}:{int(size)}\n".encode())
    for s in samples:
        h.update(f"{s.path}|{_stat_token(s)}|{s.box}|{s.angle}\n".encode())
    return h.hexdigest()[:16]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "part"


def _decode(sample: Sample, size: int) -> tuple[np.ndarray | None, tuple[int, int]]:
    try:
        image = read_image(sample)
    except UnreadableImage as exc:
        log.warning("crop cache: skipping %s", exc)
        return None, (0, 0)
    crop, _ = eval_crop(image, sample, size)  # landmarks are recomputed per item from the shape
    return crop, (int(image.shape[0]), int(image.shape[1]))


def build_crop_cache(samples: Sequence[Sample], size: int, cache_dir: str | os.PathLike, name: str,
                     progress: bool = True, threads: int = 2) -> CropCache:
    """The cache of `samples` at `size` px under `cache_dir` (`name`: the part, e.g.
    "rafdb-train"), read if it matches the sources, else decoded now and written atomically."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe(name)}-{int(size)}px"
    digest = cache_digest(samples, size)
    crops_path = cache_dir / f"{stem}-{digest}.crops.npy"
    meta_path = cache_dir / f"{stem}-{digest}.meta.npz"
    if crops_path.is_file() and meta_path.is_file():
        try:
            crops = np.load(crops_path, mmap_mode="r")
            with np.load(meta_path) as meta:
                shapes, ok = meta["shapes"], meta["ok"]
            if crops.shape == (len(samples), size, size, 3) and len(ok) == len(samples):
                return CropCache(crops, shapes, ok, crops_path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("crop cache %s: unreadable (%s); decoding again", crops_path, exc)
    for old in cache_dir.glob(f"{stem}-*"):  # the same part made from other sources: stale
        old.unlink(missing_ok=True)
    tmp = cache_dir / f".{crops_path.name}.{os.getpid()}.tmp"
    crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3))
    shapes = np.zeros((len(samples), 2), np.int32)
    ok = np.zeros(len(samples), bool)
    try:
        with ThreadPoolExecutor(max(1, int(threads))) as pool:  # PIL and cv2 release the GIL while decoding
            results = pool.map(lambda s: _decode(s, size), samples, chunksize=64)
            for i, (crop, shape) in enumerate(tqdm(results, total=len(samples), desc=f"decode {name}",
                                                   disable=not progress, leave=False, dynamic_ncols=True)):
                if crop is not None:
                    crops[i], shapes[i], ok[i] = crop, shape, True
        crops.flush()
        del crops
        os.replace(tmp, crops_path)
        meta_tmp = cache_dir / f".{meta_path.name}.{os.getpid()}.tmp.npz"
        np.savez(meta_tmp, shapes=shapes, ok=ok)
        os.replace(meta_tmp, meta_path)  # written last: its presence marks a complete cache
    finally:
        tmp.unlink(missing_ok=True)
    bad = int((~ok).sum())
    if bad:
        log.warning("crop cache %s: %d unreadable image(s) skipped", name, bad)
    return CropCache(np.load(crops_path, mmap_mode="r"), shapes, ok, crops_path)
