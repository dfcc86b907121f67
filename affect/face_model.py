"""Where the MediaPipe Face Landmarker bundle comes from.

Resolution order: an explicit path (`--face-model`), the `AFFECTCAM_FACE_MODEL`
environment variable, the user cache (`affect.files.cache_root()`:
`$AFFECTCAM_CACHE`, else `$XDG_CACHE_HOME/affectcam` or `~/.cache/affectcam`), and last a one-time
download from Google's official URL checked against a pinned sha256. Offline
with no file, the error says exactly which file to put where.

The lighter detector-only path needs `face_detector.tflite`, which the bundle
already contains (a stored, uncompressed zip member): it is extracted once
into the cache rather than downloaded separately.

It lives in `affect/` because every room needs it: the camera, training with
blendshapes, export and evaluation of models that take them.
"""

from __future__ import annotations

import os
import urllib.request
import zipfile
from pathlib import Path

from affect.files import PendingFile, atomic_write_bytes, cache_root, sha256_of

FACE_MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/"
                  "face_landmarker/float16/1/face_landmarker.task")
FACE_MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_MODEL_NAME = "face_landmarker.task"
ENV_VAR = "AFFECTCAM_FACE_MODEL"
DETECTOR_MEMBER = "face_detector.tflite"


class FaceModelError(RuntimeError):
    """The face model cannot be found, downloaded or read."""


def _check_bundle(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise FaceModelError(f"{path}: face model not found ({origin})")
    if not zipfile.is_zipfile(path):
        raise FaceModelError(f"{path}: not a MediaPipe .task bundle ({origin}); expected "
                             f"{FACE_MODEL_NAME} from {FACE_MODEL_URL}")
    return path


def download_face_model(dest: Path, url: str = FACE_MODEL_URL, sha256: str = FACE_MODEL_SHA256,
                        timeout: float = 30.0) -> Path:
    """Download to `dest` atomically and check the pinned sha256."""
    pending = PendingFile(dest)
    try:
        with open(pending.tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        got = sha256_of(pending.tmp)
        if got != sha256:
            raise FaceModelError(f"{url}: downloaded file has sha256 {got}, expected {sha256}")
        return pending.commit()
    finally:
        pending.discard()


def resolve_face_model(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The Face Landmarker bundle to use (see the module docstring for the order)."""
    if path:
        return _check_bundle(Path(path).expanduser(), "given by --face-model")
    if os.environ.get(ENV_VAR):
        return _check_bundle(Path(os.environ[ENV_VAR]).expanduser(), f"from ${ENV_VAR}")
    cached = cache_root() / FACE_MODEL_NAME
    if cached.is_file():
        return _check_bundle(cached, "user cache")
    if download:
        try:
            return download_face_model(cached)
        except FaceModelError:
            raise
        except Exception as exc:  # URLError, timeouts, disk errors
            reason = getattr(exc, "reason", None) or exc
            raise FaceModelError(
                f"no face model and the download failed ({reason}): put {FACE_MODEL_NAME} "
                f"(sha256 {FACE_MODEL_SHA256[:12]}…, from {FACE_MODEL_URL}) at {cached}, "
                f"or pass --face-model PATH, or set {ENV_VAR}") from None
    raise FaceModelError(f"no face model: put {FACE_MODEL_NAME} from {FACE_MODEL_URL} at {cached}, "
                         f"or pass --face-model PATH, or set {ENV_VAR}")


def detector_model(bundle: Path) -> Path:
    """`face_detector.tflite` extracted from the landmarker bundle into the cache (once)."""
    bundle = Path(bundle)
    key = sha256_of(bundle)[:16]
    dest = cache_root("detector") / f"face_detector-{key}.tflite"
    if dest.is_file():
        return dest
    try:
        with zipfile.ZipFile(bundle) as zf:
            data = zf.read(DETECTOR_MEMBER)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise FaceModelError(f"{bundle}: no {DETECTOR_MEMBER} inside the bundle ({exc})") from None
    return atomic_write_bytes(dest, data)
