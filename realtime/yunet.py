"""YuNet, the small-face detector of wide shots (meeting rooms, classrooms, group calls).

MediaPipe's short-range FaceDetector sees the whole frame at 128×128, so in a
1280×720 frame a face under about 100 px is not found at all. YuNet (OpenCV
Zoo, Shiqi Yu et al., MIT) runs at the frame's own resolution and finds faces
from about 10 px; it is packaged here (`realtime/models/`, with its licence)
and checked against its sha256 at load. It runs through OpenCV's
`cv2.FaceDetectorYN` (the OpenCV that MediaPipe brings): on this project's
2-core CPU it ran a 640×640 frame in 18 ms against ONNX Runtime's 46 ms, and
it takes any input size (the ONNX graph is fixed at 640×640).

At the full resolution of a large frame YuNet misses the faces that fill
much of it (a selfie on a 1280×720 webcam: on the clip upscaled 2× it found
102 faces in 100 frames against 225 at 640×360), and the full-resolution pass
is what costs (41 ms a 1280×720 frame here, against 10 ms at 640×360). So a
frame gets two passes (`passes="pyramid"`, the default): every frame a coarse
one at half the long side (at most `coarse_side`) for the faces large enough
to move fast, and every `fine_every`-th frame the full-resolution one (at most
`max_side`) for the small ones, whose boxes are carried to the frames between
(faces that small move a few pixels in a tenth of a second; a carried box
gives way to a coarse one it overlaps, and a cut — the frame's thumbnail
changed by more than `cut_change` grey levels on average — runs the fine pass
at once instead of carrying). At half resolution YuNet's weak detections are
mostly hands and patterns (a raised hand scored 0.49 on the clip), so a
coarse face needs at least `coarse_threshold`. Frames of at most `single_side` get
one full pass. `passes="full"` and `passes="coarse"` run one pass per frame
(all measured in docs/BENCHMARKS.md); images that are not a video
(`fine_every=1`) get both passes each.

Dim rooms and cheap webcams: the detector (not the model) sees each frame
brightened when its brightest 1 % is below `bright_target` (a gain of at
most 4: at 35 % brightness YuNet found 1.83 faces a frame of the clip
against 3.30 at full, 3.68 with the gain), and smoothed when its noise
(the median absolute Laplacian of a subsampled grey image) is above 3 grey
levels, by a Gaussian of a quarter of that noise (σ 18 noise: 1.87 faces a
frame, 3.11 smoothed). A clean frame is passed as it is.

Each face carries YuNet's five keypoints (eyes, nose tip, mouth corners): the
eyes give the roll for the crop, as the MediaPipe detector's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from affect.face_model import FaceModelError
from affect.files import sha256_of

YUNET_FILE = Path(__file__).resolve().parent / "models" / "face_detection_yunet_2023mar.onnx"
YUNET_LICENSE = YUNET_FILE.parent / "face_detection_yunet_LICENSE"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
PASSES = ("pyramid", "full", "coarse")

_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime) already hashed in this process


def check_yunet_model(path: str | Path | None = None) -> Path:
    """The YuNet file, checked (present, the pinned sha256 when it is the packaged one);
    a missing or damaged file raises `FaceModelError` with one line naming it."""
    p = Path(path) if path is not None else YUNET_FILE
    if not p.is_file():
        raise FaceModelError(f"{p}: YuNet face detector not found (packaged with affectcam as "
                             f"realtime/models/{YUNET_FILE.name}; reinstall, or pass the file)")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return p
    if path is None:  # the packaged file must be exactly the official one
        got = sha256_of(p)
        if got != YUNET_SHA256:
            raise FaceModelError(f"{p}: YuNet face detector is damaged (sha256 {got[:12]}…, expected "
                                 f"{YUNET_SHA256[:12]}…); reinstall affectcam")
    _CHECKED.add(key)
    return p


@dataclass
class YuNetOptions:
    model_path: str | Path | None = None  # None: the packaged file (sha256-checked)
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 5000
    passes: str = "pyramid"  # "pyramid" (coarse + full), "full", "coarse"
    coarse_side: int = 640  # most long side of the coarse pass (else half the frame's)
    max_side: int | None = None  # cap on the fine pass's long side (None: the frame's own)
    fine_every: int = 3  # pyramid: the fine pass on every Nth frame, its faces carried between
    single_side: int = 400  # frames this small get one full pass
    coarse_threshold: float = 0.6  # pyramid: the least score of a coarse-pass face
    cut_change: float = 12.0  # pyramid: mean grey change of the 32x18 thumbnail that counts as a cut
    bright_target: float = 200.0  # brighten a frame whose 99th grey percentile is below this (0: never)
    denoise_above: float = 3.0  # smooth a frame whose noise estimate exceeds this, in grey levels (0: never)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    while order:
        i = order.pop(0)
        keep.append(i)
        if not order:
            break
        rest = np.array(order)
        iw = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = iw * ih
        overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        # a small box inside a large one (the coarse pass's face and a fine-pass part of it)
        inside = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        order = [j for j, o, c in zip(rest, overlap, inside) if o <= iou and c <= 0.8]
    return keep


def _covers_any(box: np.ndarray, others: np.ndarray, iou: float = 0.3) -> bool:
    """True when `box` overlaps one of `others` by IoU above `iou`, or mostly lies inside one."""
    if not len(others):
        return False
    x0, y0 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y1 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    a, b = box[2] * box[3], others[:, 2] * others[:, 3]
    return bool(np.any(inter / np.maximum(a + b - inter, 1e-9) > iou) or np.any(inter / np.maximum(np.minimum(a, b), 1e-9) > 0.8))


class YuNetDetector:
    """`detect(bgr) → (N, 15) float32`: x, y, w, h, five (x, y) keypoints, score, in frame pixels."""

    def __init__(self, options: YuNetOptions | None = None):
        self.options = o = options or YuNetOptions()
        if o.passes not in PASSES:
            raise ValueError(f"YuNet passes must be one of {list(PASSES)}, got {o.passes!r}")
        path = check_yunet_model(o.model_path)
        log = cv2.utils.logging
        level = log.getLogLevel()
        # OpenCV 5's DNN warns on every create that its new graph engine ignores the target: noise
        log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), float(o.score_threshold),
                                                  float(o.nms_threshold), int(o.top_k))
        except cv2.error as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise FaceModelError(f"{path}: not a YuNet ONNX model OpenCV can read ({first})") from None
        finally:
            log.setLogLevel(level)
        if o.fine_every < 1:
            raise ValueError(f"YuNet fine_every must be at least 1, got {o.fine_every}")
        self._size: tuple[int, int] | None = None
        self._frames = 0  # frames seen (which get the fine pass)
        self._carried: tuple[tuple[int, int], np.ndarray] | None = None  # (frame size, fine faces)
        self._thumb: np.ndarray | None = None  # the last fine frame's 32x18 grey thumbnail

    def _run(self, bgr: np.ndarray, scale: float) -> np.ndarray:
        img = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        size = (img.shape[1], img.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(np.ascontiguousarray(img))
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), np.float32)
        out = faces.astype(np.float32)
        if scale != 1.0:
            out[:, :14] /= scale
        return out

    def scales(self, width: int, height: int) -> list[float]:
        """The resize factors of the passes this frame size gets (coarse first)."""
        o = self.options
        long = max(width, height)
        fine = min(1.0, o.max_side / long) if o.max_side else 1.0
        coarse = min(o.coarse_side, long / 2) / long
        if o.passes == "full" or (o.passes == "pyramid" and long <= o.single_side):
            return [fine]
        if o.passes == "coarse" or coarse >= fine * 0.8:  # one pass is enough when they are about equal
            return [coarse]
        return [coarse, fine]

    def condition(self, bgr: np.ndarray) -> np.ndarray:
        """The frame as the detector sees it: brightened when dim, smoothed when noisy."""
        o = self.options
        if o.bright_target > 0:
            grey = cv2.cvtColor(cv2.resize(bgr, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
            gain = min(4.0, o.bright_target / max(float(np.percentile(grey, 99)), 1.0))
            if gain > 1.05:
                bgr = cv2.convertScaleAbs(bgr, alpha=gain)
        if o.denoise_above > 0:
            step = max(1, max(bgr.shape[:2]) // 320)
            grey = cv2.cvtColor(np.ascontiguousarray(bgr[::step, ::step]), cv2.COLOR_BGR2GRAY).astype(np.float32)
            noise = float(np.median(np.abs(cv2.Laplacian(grey, cv2.CV_32F)))) / 0.6745 / np.sqrt(20.0)
            if noise > o.denoise_above:
                bgr = cv2.GaussianBlur(bgr, (0, 0), 0.25 * noise)
        return bgr

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        bgr = self.condition(bgr)
        h, w = bgr.shape[:2]
        scales = self.scales(w, h)
        n, self._frames = self._frames, self._frames + 1
        if len(scales) == 1:
            faces = self._run(bgr, scales[0])
        else:
            coarse = self._run(bgr, scales[0])
            coarse = coarse[coarse[:, 14] >= max(self.options.score_threshold, self.options.coarse_threshold)]
            carried = self._carried
            thumb = cv2.cvtColor(cv2.resize(bgr, (32, 18), interpolation=cv2.INTER_AREA),
                                 cv2.COLOR_BGR2GRAY).astype(np.float32)
            cut = self._thumb is None or float(np.abs(thumb - self._thumb).mean()) > self.options.cut_change
            if n % self.options.fine_every == 0 or carried is None or carried[0] != (w, h) or cut:
                fine = self._run(bgr, scales[1])
                self._carried, self._thumb = ((w, h), fine), thumb
                faces = np.concatenate([coarse, fine])
            else:  # the last fine pass's faces, where no coarse face is now
                fine = carried[1]
                keep = [i for i in range(len(fine)) if not _covers_any(fine[i, :4], coarse[:, :4])]
                faces = np.concatenate([coarse, fine[keep]])
            if len(faces) > 1:
                faces = faces[_nms(faces[:, :4], faces[:, 14], self.options.nms_threshold)]
        return faces[np.argsort(-faces[:, 14])] if len(faces) else faces

    def close(self) -> None:
        self._net = None

    def __enter__(self) -> YuNetDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
