"""Image → model input: the one normalisation used by training, export
parity checks and every runtime backend."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from affect.spec import ModelSpec


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Greyscale (HxW or HxWx1) or RGBA → HxWx3 RGB uint8."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """NHWC uint8 RGB (or HWC) → NCHW float32 `(pixel/255 - mean) / std`."""
    batch = images[None] if images.ndim == 3 else images
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    # one strided copy into NCHW, then two in-place passes (x/255 - m)/s = x*(1/(255 s)) - m/s:
    # the same numbers as four whole-array passes, several times faster on a crowd's batch
    x = np.empty((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), np.float32)
    np.copyto(x, batch.transpose(0, 3, 1, 2))
    x *= (np.float32(1 / 255) / std)[None, :, None, None]
    x -= (mean / std)[None, :, None, None]
    return x


def prepare_batch(crops: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """RGB face crops of any size → the model's input tensor [N, 3, S, S]."""
    if len(crops) == 0:
        return np.zeros((0, 3, spec.input_size, spec.input_size), np.float32)
    batch = np.stack([resize_square(to_rgb(c), spec.input_size) for c in crops])
    return normalise(batch, spec.mean, spec.std)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def expression_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Expression logits [N, C] → the probabilities shown and written (float64):
    softmax(logits / T), T the model's `ModelSpec.temperature` (its `affect.temperature`
    metadata, fitted on validation parts; 1 = the plain softmax). Every reader of a model
    (the camera's `AffectReader`, `train eval`, `export bench`) turns logits into
    probabilities here, so what the overlay, CSV, JSONL and dashboard show is what
    `train eval` of the same file measured."""
    return softmax(np.asarray(logits, np.float64) / float(temperature), axis=-1)
