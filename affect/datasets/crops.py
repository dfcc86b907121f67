"""A sample's pixels and its deterministic evaluation crop: the one way a
dataset face becomes model input outside augmentation (`train eval`, fit's
validation, the blendshape and crop caches, `export calibrate`).

The path is exactly `affect.preprocess.to_rgb → resize_square` (after
`affect.crop.crop_face` for samples with a box), the calls `prepare_batch`
makes at run time, so training, evaluation and deployment agree."""

from __future__ import annotations

import numpy as np

from affect.crop import crop_face, given_square, points_to_crop
from affect.datasets.records import Sample
from affect.images import read_image_file
from affect.preprocess import resize_square, to_rgb


def read_image(sample: Sample) -> np.ndarray:
    """The sample's pixels (HxW greyscale or HxWx3 RGB uint8): held in memory
    (FER2013 CSV rows) or read by `affect.images.read_image_file`."""
    if sample.pixels is not None:
        return sample.pixels
    return read_image_file(sample.path)


def eval_crop(image: np.ndarray, sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Deterministic S x S RGB crop and the sample's landmarks in [0, 1] crop coordinates."""
    rgb = to_rgb(image)
    if sample.box is not None:
        box = given_square(sample.box, sample.angle)  # Sample.box is already the rule's square
        crop = resize_square(crop_face(rgb, box, size), size)
    else:
        crop = resize_square(rgb, size)
    return crop, crop_points(sample, rgb.shape[0], rgb.shape[1])


def crop_points(sample: Sample, height: int, width: int) -> np.ndarray | None:
    """The sample's landmarks in [0, 1] coordinates of its eval crop, from an image of that size."""
    points = sample.landmarks
    if points is None:
        return None
    if sample.box is not None:
        points = points_to_crop(points, given_square(sample.box, sample.angle), 1)
    else:
        points = np.asarray(points, np.float64).reshape(-1, 2) / np.array([width, height], np.float64)
    return np.asarray(points, np.float32)
