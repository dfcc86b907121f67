"""Training augmentation on uint8 crops with cv2: one affine warp for flip,
rotation, scale and shift (so landmarks follow the pixels exactly), then
photometric changes. Random erasing runs later, on the normalised tensor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

from affect.datasets.records import DataError
from affect.preprocess import to_rgb

# Index of each iBUG 68-point landmark's mirror image (jaw, brows, nose,
# eyes, mouth), so a flipped face keeps "point 36 = right eye outer corner".
FLIP_68: tuple[int, ...] = tuple(
    list(range(16, -1, -1))                            # jaw 0-16
    + list(range(26, 16, -1))                          # brows 17-26
    + [27, 28, 29, 30]                                 # nose bridge
    + [35, 34, 33, 32, 31]                             # nose bottom
    + [45, 44, 43, 42, 47, 46]                         # right eye -> left eye
    + [39, 38, 37, 36, 41, 40]                         # left eye -> right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]                 # inner lips
)
FLIP_MAPS: dict[int, tuple[int, ...]] = {68: FLIP_68}


@dataclass
class AugmentConfig:
    """Probabilities in [0, 1]; ranges are symmetric (± the value)."""
    hflip: float = 0.5          # probability of a horizontal flip
    rotation: float = 10.0      # degrees
    scale: float = 0.1          # zoom factor 1 ± scale
    shift: float = 0.05         # fraction of the crop side
    brightness: float = 0.2     # ± fraction of 255
    contrast: float = 0.2       # factor 1 ± contrast around the mean grey
    blur: float = 0.0           # probability of a Gaussian blur
    noise: float = 0.0          # max std of Gaussian pixel noise (0-255 units)
    erasing: float = 0.0        # probability of random erasing (on the tensor)
    greyscale: float = 0.0      # probability of a greyscale image (as 3 equal channels)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"augment: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


def geometric_matrix(cfg: AugmentConfig, size: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """3x3 affine in continuous pixel coordinates ([0, size], pixel centres at
    i + 0.5) and whether it mirrors."""
    flip = bool(rng.random() < cfg.hflip)
    angle = math.radians(rng.uniform(-cfg.rotation, cfg.rotation)) if cfg.rotation else 0.0
    zoom = rng.uniform(1 - cfg.scale, 1 + cfg.scale) if cfg.scale else 1.0
    tx, ty = (rng.uniform(-cfg.shift, cfg.shift, 2) * size) if cfg.shift else (0.0, 0.0)
    c = size / 2
    centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], float)
    mirror = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    rot = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], float)
    back = np.array([[1, 0, c + tx], [0, 1, c + ty], [0, 0, 1]], float)
    return back @ rot @ mirror @ centre, flip


def warp(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a continuous-coordinate affine with cv2 (which indexes pixel centres)."""
    # x_pix' + 0.5 = A (x_pix + 0.5) + b  =>  offset b + A·0.5 - 0.5
    a = m[:2, :2]
    offset = m[:2, 2] + a @ np.array([0.5, 0.5]) - 0.5
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, np.hstack([a, offset[:, None]]), size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def augment_image(image: np.ndarray, points: np.ndarray | None, cfg: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Augment a square HxWx3 uint8 crop; `points` (K, 2) in [0, 1] crop
    coordinates move with it (and swap left/right on a flip). Returns (image,
    points, flipped): per-face features with a side (blendshapes) mirror too."""
    size = image.shape[0]
    m, flipped = geometric_matrix(cfg, size, rng)
    if not np.allclose(m, np.eye(3)):
        image = warp(image, m)
        if points is not None:
            pts = points.reshape(-1, 2) * size
            pts = (pts @ m[:2, :2].T + m[:2, 2]) / size
            if flipped:
                if len(pts) not in FLIP_MAPS:
                    raise DataError(f"cannot flip {len(pts)} landmarks: no left/right map (known: 68)")
                pts = pts[list(FLIP_MAPS[len(pts)])]
            points = pts.astype(np.float32)
    if cfg.brightness or cfg.contrast:
        alpha = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
        beta = rng.uniform(-cfg.brightness, cfg.brightness) * 255
        mean = float(image.mean())
        image = np.clip((image.astype(np.float32) - mean) * alpha + mean + beta, 0, 255).astype(np.uint8)
    if cfg.blur and rng.random() < cfg.blur:
        sigma = rng.uniform(0.3, 1.5) * size / 112  # similar softness at any input size
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if cfg.noise:
        std = rng.uniform(0, cfg.noise)
        image = np.clip(image + rng.normal(0, std, image.shape), 0, 255).astype(np.uint8)
    # last, so noise and colour changes cannot bring colour back into a grey image
    if cfg.greyscale and rng.random() < cfg.greyscale:
        image = to_rgb(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    return np.ascontiguousarray(image), points, flipped
