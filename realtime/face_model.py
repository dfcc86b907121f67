"""Moved to `affect.face_model` (every room resolves the face model); kept so old imports work."""

import urllib.request  # noqa: F401  (tests patch realtime.face_model.urllib.request.urlopen)

from affect.face_model import (  # noqa: F401
    DETECTOR_MEMBER,
    ENV_VAR,
    FACE_MODEL_NAME,
    FACE_MODEL_SHA256,
    FACE_MODEL_URL,
    FaceModelError,
    detector_model,
    download_face_model,
    resolve_face_model,
    sha256_of,
)
