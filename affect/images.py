"""Reading an image file, the same way in every room (no torch here)."""

from __future__ import annotations

import os

import numpy as np

# What counts as an image file in a folder (training sets, the benchmark's
# faces, the camera's image-folder source).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# What counts as a video file (the dashboard's video lists, the corpus command's folders).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class UnreadableImage(ValueError):
    """An image file that is missing, truncated or not an image."""


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels as decoded (HxW greyscale or HxWx3 RGB uint8).

    PIL rather than cv2: cv2 silently returns a half-grey picture for a
    truncated JPEG, PIL raises, so bad files are caught and counted.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "L"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"{path}: unreadable image ({exc})") from None
