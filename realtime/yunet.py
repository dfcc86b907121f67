"""YuNet, the small-face detector of wide shots (meeting rooms, classrooms, group calls).

MediaPipe's short-range FaceDetector sees the whole frame at 128×128, so in a
1280×720 frame a face under about 100 px is not found at all. YuNet (OpenCV
Zoo, Shiqi Yu et al., MIT) runs at the frame's own resolution and finds faces
from about 10 px; it is packaged here (`realtime/models/`, with its licence)
and checked against its sha256 at load. It runs through ONNX Runtime
on one thread (`engine="onnxruntime"`, the default): the graph's input is fixed
at 640×640, so at load its height and width are made free (the file on disk
stays the official one), a frame is padded to a multiple of 32 as OpenCV does,
and the five stride outputs are decoded here (score √(cls·obj), centre and
keypoints offset from the grid cell, size exp(·)·stride; then NMS), which gives
OpenCV's `cv2.FaceDetectorYN` boxes to the hundredth of a pixel (a test holds
them equal). One ORT thread ran a 640×360 frame in about half the time
`cv2.FaceDetectorYN` took with its own threads beside the rest of the pipeline
(docs/BENCHMARKS.md); `engine="opencv"` keeps OpenCV's detector.

At the full resolution of a large frame YuNet misses the faces that fill
much of it (a selfie on a 1280×720 webcam: on the clip upscaled 2× it found
102 faces in 100 frames against 225 at 640×360), and the full-resolution pass
is what costs (41 ms a 1280×720 frame here, against 10 ms at 640×360). So a
frame gets two passes (`passes="pyramid"`, the default): every frame a coarse
one at half the long side (at most `coarse_side`) for the faces large enough
to move fast, and every `fine_every`-th frame the full-resolution one (at most
`max_side`) for the small ones, whose boxes are carried to the frames between
(faces that small move a few pixels in a fifth of a second, and each carried
face follows its own patch by template matching, `follow_carried`; a carried
box gives way to a coarse one it overlaps, a face both passes find keeps its
coarse box so its track does not jump, and a cut — the frame's thumbnail
changed by more than `cut_change` grey levels on average — runs the fine pass
at once instead of carrying). `coarse_every` > 1 looks only every Nth frame
(the frames between keep the last look's faces): measured, not the default.
At half resolution YuNet's weak detections are mostly hands and patterns (a raised hand scored 0.49 on the clip), so a
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
frame, 3.11 smoothed). A clean frame is passed as it is. Light and noise are
measured every `condition_every`-th frame and at a cut (they change with the
scene), and each pass conditions the image it sees at its own size.

Each face carries YuNet's five keypoints (eyes, nose tip, mouth corners): the
eyes give the roll for the crop, as the MediaPipe detector's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import onnx

from affect.errors import first_line
from affect.face_model import FaceModelError
from affect.files import sha256_of

YUNET_FILE = Path(__file__).resolve().parent / "models" / "face_detection_yunet_2023mar.onnx"
YUNET_LICENSE = YUNET_FILE.parent / "face_detection_yunet_LICENSE"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
PASSES = ("pyramid", "full", "coarse")
ENGINES = ("onnxruntime", "opencv")
_STRIDES = (8, 16, 32)
_XS, _YS = [0, 4, 6, 8, 10, 12], [1, 5, 7, 9, 11, 13]  # a face row's x and y columns (box corner, keypoints)

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
    engine: str = "onnxruntime"  # "onnxruntime" (one thread, decoded here) or "opencv" (cv2.FaceDetectorYN)
    threads: int = 1  # ONNX Runtime intra-op threads (the model runs on another thread of the pipeline)
    passes: str = "pyramid"  # "pyramid" (coarse + full), "full", "coarse"
    coarse_side: int = 640  # most long side of the coarse pass (else half the frame's)
    max_side: int | None = None  # cap on the fine pass's long side (None: the frame's own)
    coarse_every: int = 1  # look every Nth frame (the frames between keep the last look's faces)
    follow_carried: bool = True  # move carried faces by matching their patch (a small face drifts between fine passes)
    keep_missed: int = 1  # a carried face the next full-resolution pass misses stays for this many passes more...
    keep_match: float = 0.8  # ...while its patch matches it at least this well (normalised correlation)
    fine_every: int = 6  # pyramid: the fine pass on every Nth frame, its faces carried between (measured: docs/BENCHMARKS.md)
    single_side: int = 400  # frames this small get one full pass
    coarse_threshold: float = 0.6  # pyramid: the least score of a coarse-pass face
    cut_change: float = 12.0  # pyramid: mean grey change of the 32x18 thumbnail that counts as a cut
    bright_target: float = 200.0  # brighten a frame whose 99th grey percentile is below this (0: never)
    denoise_above: float = 3.0  # smooth a frame whose noise estimate exceeds this, in grey levels (0: never)
    denoise_sigma: float = 0.25  # the smoothing Gaussian's σ (frame pixels) per grey level of noise
    condition_every: int = 10  # measure light and noise again every Nth frame (and at a cut)


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


def _quiet_cv2(fn):
    """Call `fn` with OpenCV's log at ERROR: OpenCV 5's DNN warns on every create that its new
    graph engine ignores the target."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        return fn()
    finally:
        log.setLogLevel(level)


class _OpenCvEngine:
    """`cv2.FaceDetectorYN`: decoding and NMS in OpenCV."""

    def __init__(self, path: Path, o: YuNetOptions):
        try:
            self._net = _quiet_cv2(lambda: cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), float(o.score_threshold), float(o.nms_threshold), int(o.top_k)))
        except cv2.error as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise FaceModelError(f"{path}: not a YuNet ONNX model OpenCV can read ({first})") from None
        self._size: tuple[int, int] | None = None

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(np.ascontiguousarray(bgr))
        return np.zeros((0, 15), np.float32) if faces is None else faces.astype(np.float32)


def _free_input_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with its input's height and width (and the outputs' anchor count) made free."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"input of rank {len(dims)}, expected NCHW")
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out_dims = out.type.tensor_type.shape.dim
        if len(out_dims) > 1:
            out_dims[1].dim_param = "anchors"
    del model.graph.value_info[:]  # shapes inferred for 640x640 would contradict the new size
    return model


class _OrtEngine:
    """YuNet through ONNX Runtime at any input size, decoded as OpenCV's FaceDetectorYN does."""

    def __init__(self, path: Path, o: YuNetOptions):
        import onnx
        import onnxruntime as ort

        self.options = o
        try:
            model = _free_input_size(onnx.load(str(path)))
            outputs = [v.name for v in model.graph.output]
            missing = [f"{k}_{s}" for s in _STRIDES for k in ("cls", "obj", "bbox", "kps")
                       if f"{k}_{s}" not in outputs]
            if missing:
                raise ValueError(f"no output {missing[0]}")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, int(o.threads))
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(model.SerializeToString(), opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnx and ORT raise many types for a bad file
            raise FaceModelError(f"{path}: not a YuNet ONNX model ONNX Runtime can read "
                                 f"({first_line(exc)})") from None
        self._input = self._session.get_inputs()[0].name
        self._names = [f"{k}_{s}" for s in _STRIDES for k in ("cls", "obj", "bbox", "kps")]
        self._blob: np.ndarray | None = None

    def detect(self, image: np.ndarray, rgb: bool = False) -> np.ndarray:
        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32  # padded right and bottom, as OpenCV does
        if self._blob is None or self._blob.shape[2:] != (ph, pw):
            self._blob = np.zeros((1, 3, ph, pw), np.float32)
        # YuNet takes BGR 0-255 floats; an RGB frame is reversed on the way in (no copy of it)
        np.copyto(self._blob[0, :, :h, :w], (image[..., ::-1] if rgb else image).transpose(2, 0, 1))
        outs = self._session.run(self._names, {self._input: self._blob})
        o = self.options
        found = []
        for i, stride in enumerate(_STRIDES):
            cls, obj, bbox, kps = (a[0] for a in outs[4 * i: 4 * i + 4])
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(score >= o.score_threshold)
            if not len(keep):
                continue
            row, col = np.divmod(keep, pw // stride)
            b, k = bbox[keep], kps[keep]
            bw, bh = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
            cx, cy = (col + b[:, 0]) * stride, (row + b[:, 1]) * stride
            points = np.empty((len(keep), 10), np.float32)
            points[:, 0::2] = (k[:, 0::2] + col[:, None]) * stride
            points[:, 1::2] = (k[:, 1::2] + row[:, None]) * stride
            found.append(np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, points, score[keep]]))
        if not found:
            return np.zeros((0, 15), np.float32)
        faces = np.concatenate(found).astype(np.float32)
        kept = cv2.dnn.NMSBoxes(faces[:, :4].tolist(), faces[:, 14].tolist(), float(o.score_threshold),
                                float(o.nms_threshold), top_k=int(o.top_k))
        return faces[np.asarray(kept, int).reshape(-1)]


def _uncovered(faces: np.ndarray, others: np.ndarray) -> list[int]:
    """Indices of the faces that no face of `others` covers (`_covers_any`)."""
    return [i for i in range(len(faces)) if not _covers_any(faces[i, :4], others[:, :4])]


def _grey(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)


def _face_patches(image: np.ndarray, faces: np.ndarray) -> list[np.ndarray | None]:
    """Each face's box as a grey patch (None at the frame's edge), to follow it between passes."""
    h, w = image.shape[:2]
    out: list[np.ndarray | None] = []
    for x, y, bw, bh in faces[:, :4]:
        x0, y0, x1, y1 = int(round(x)), int(round(y)), int(round(x + bw)), int(round(y + bh))
        ok = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h and min(x1 - x0, y1 - y0) >= 8
        out.append(_grey(image, x0, y0, x1, y1) if ok else None)
    return out


def _follow(image: np.ndarray, faces: np.ndarray, patches: list[np.ndarray | None], which: list[int],
            reach: float = 0.5, min_match: float = 0.6) -> dict[int, float]:
    """Move faces[which] (boxes and keypoints, in place) to where their patch matches best within
    `reach` × their size of where they were; a face whose best match scores under `min_match`
    (turned away, covered) stays where it was. A 40-px face drifting 1.5 px a frame is 7 px off
    after five frames, a sixth of its crop: cheap matching (tens of µs a face) keeps it framed.
    Returns each matched face's score (normalised correlation, 1 = the same patch)."""
    h, w = image.shape[:2]
    matched: dict[int, float] = {}
    for i in which:
        patch = patches[i] if i < len(patches) else None
        if patch is None:
            continue
        ph, pw = patch.shape
        x, y = faces[i, 0], faces[i, 1]
        r = max(4, int(reach * max(pw, ph)))
        x0, y0 = max(0, int(round(x)) - r), max(0, int(round(y)) - r)
        x1, y1 = min(w, int(round(x)) + pw + r), min(h, int(round(y)) + ph + r)
        if x1 - x0 < pw or y1 - y0 < ph:
            continue
        scores = cv2.matchTemplate(_grey(image, x0, y0, x1, y1), patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        matched[i] = float(best)
        if best < min_match:
            continue
        dx, dy = x0 + bx - x, y0 + by - y
        faces[i, _XS] += dx
        faces[i, _YS] += dy
    return matched


class YuNetDetector:
    """`detect(bgr) → (N, 15) float32`: x, y, w, h, five (x, y) keypoints, score, in frame pixels."""

    def __init__(self, options: YuNetOptions | None = None):
        self.options = o = options or YuNetOptions()
        if o.passes not in PASSES:
            raise ValueError(f"YuNet passes must be one of {list(PASSES)}, got {o.passes!r}")
        if o.engine not in ENGINES:
            raise ValueError(f"YuNet engine must be one of {list(ENGINES)}, got {o.engine!r}")
        path = check_yunet_model(o.model_path)
        self._engine = _OrtEngine(path, o) if o.engine == "onnxruntime" else _OpenCvEngine(path, o)
        if min(o.fine_every, o.condition_every, o.coarse_every) < 1:
            raise ValueError(f"YuNet coarse_every, fine_every and condition_every must be at least 1, got "
                             f"{o.coarse_every}, {o.fine_every} and {o.condition_every}")
        self._size: tuple[int, int] | None = None
        self._frames = 0  # frames seen (which get the fine pass)
        self._carried: tuple[tuple[int, int], np.ndarray] | None = None  # (frame size, fine faces)
        self._patches: list[np.ndarray | None] = []  # each fine face's grey patch, as the fine pass saw it
        self._misses = np.zeros(0, int)  # full-resolution passes in a row that missed each carried face
        self._thumb: np.ndarray | None = None  # the last fine frame's 32x18 grey thumbnail
        self._conditions: tuple[float, float] | None = None  # (gain, blur σ) measured last
        self._last: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None  # size, thumbnail, faces

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

    def measure_conditions(self, image: np.ndarray) -> tuple[float, float]:
        """(gain, blur σ in frame pixels) for this frame: a gain above 1 when its brightest 1 % is
        below `bright_target`, a blur when its noise is above `denoise_above` (1.0, 0.0: as it is).
        Grey weights are the same for BGR and RGB within a grey level on these statistics."""
        o = self.options
        gain, sigma = 1.0, 0.0
        if o.bright_target > 0:
            grey = cv2.cvtColor(cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
            gain = min(4.0, o.bright_target / max(float(np.percentile(grey, 99)), 1.0))
            gain = gain if gain > 1.05 else 1.0
        if o.denoise_above > 0:
            step = max(1, max(image.shape[:2]) // 320)
            grey = cv2.cvtColor(np.ascontiguousarray(image[::step, ::step]), cv2.COLOR_BGR2GRAY).astype(np.float32)
            # the noise after the gain: brightening a dim frame amplifies its noise too
            noise = gain * float(np.median(np.abs(cv2.Laplacian(grey, cv2.CV_32F)))) / 0.6745 / np.sqrt(20.0)
            sigma = o.denoise_sigma * noise if noise > o.denoise_above else 0.0
        return gain, sigma

    @staticmethod
    def apply_conditions(image: np.ndarray, gain: float, sigma: float) -> np.ndarray:
        if gain > 1.0:
            image = cv2.convertScaleAbs(image, alpha=gain)
        if sigma > 0.0:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        return image

    def condition(self, image: np.ndarray) -> np.ndarray:
        """The frame as the detector sees it: brightened when dim, smoothed when noisy."""
        return self.apply_conditions(image, *self.measure_conditions(image))

    def _look(self, image: np.ndarray, scale: float, rgb: bool) -> np.ndarray:
        """One pass: the frame resized by `scale`, conditioned at that size (a blur of σ·scale),
        through the engine; boxes in frame pixels."""
        img = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gain, sigma = self._conditions
        img = self.apply_conditions(img, gain, sigma * scale)
        if isinstance(self._engine, _OrtEngine):
            out = self._engine.detect(img, rgb=rgb)
        else:
            out = self._engine.detect(cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if rgb else img)
        if scale != 1.0 and len(out):
            out[:, :14] /= scale
        return out

    def detect(self, image: np.ndarray, rgb: bool = False) -> np.ndarray:
        """Faces in an HxWx3 uint8 frame, BGR (or RGB with `rgb=True`), best first."""
        o = self.options
        h, w = image.shape[:2]
        scales = self.scales(w, h)
        n, self._frames = self._frames, self._frames + 1
        # the 32x18 thumbnail tells a cut (the fine pass runs at once) and when to look at the
        # light and noise again: they change with the scene, not from frame to frame
        thumb = cv2.resize(image, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)
        cut = self._thumb is None or float(np.abs(thumb - self._thumb).mean()) > o.cut_change
        if cut or self._conditions is None or n % o.condition_every == 0:
            self._conditions = self.measure_conditions(image)
        last = self._last
        if (n % o.coarse_every and last is not None and last[0] == (w, h)
                and float(np.abs(thumb - last[1]).mean()) <= o.cut_change):
            return last[2].copy()  # a frame between two looks: the last look's faces (tracking follows them)
        faces = self._passes(image, scales, thumb, cut, n, rgb)
        self._last = ((w, h), thumb, faces)
        return faces.copy()

    def _passes(self, image: np.ndarray, scales: list[float], thumb: np.ndarray, cut: bool, n: int,
                rgb: bool) -> np.ndarray:
        o = self.options
        h, w = image.shape[:2]
        if len(scales) == 1:
            faces = self._look(image, scales[0], rgb)
            self._thumb = thumb
        else:
            coarse = self._look(image, scales[0], rgb)
            coarse = coarse[coarse[:, 14] >= max(o.score_threshold, o.coarse_threshold)]
            carried = self._carried
            if n % o.fine_every == 0 or carried is None or carried[0] != (w, h) or cut:
                fine = self._look(image, scales[1], rgb)
                patches = _face_patches(image, fine) if o.follow_carried else []
                misses = [0] * len(fine)
                if o.follow_carried and o.keep_missed and carried is not None and carried[0] == (w, h) and not cut:
                    # a small face this pass missed (its score dipped under the threshold for a frame)
                    # stays while its own patch still matches it well, for keep_missed passes at most
                    old = carried[1]
                    which = [i for i in _uncovered(old, np.concatenate([fine, coarse])) if self._misses[i] < o.keep_missed]
                    matched = _follow(image, old, self._patches, which)
                    which = [i for i in which if matched.get(i, 0.0) >= o.keep_match]
                    fine = np.concatenate([fine, old[which]])
                    patches += [self._patches[i] for i in which]
                    misses += [int(self._misses[i]) + 1 for i in which]
                self._carried, self._thumb = ((w, h), fine), thumb
                self._patches, self._misses = patches, np.asarray(misses, int)
                # a face both passes find keeps its coarse box, as on the frames between: a box that
                # jumped between the two passes' every sixth frame split one face into two tracks
                faces = np.concatenate([coarse, fine[_uncovered(fine, coarse)]])
            else:  # the last fine pass's faces, where no coarse face is now, followed to this frame
                fine = carried[1]
                keep = _uncovered(fine, coarse)
                if o.follow_carried:
                    _follow(image, fine, self._patches, keep)
                faces = np.concatenate([coarse, fine[keep]])
            if len(faces) > 1:
                faces = faces[_nms(faces[:, :4], faces[:, 14], o.nms_threshold)]
        return faces[np.argsort(-faces[:, 14])] if len(faces) else faces

    def close(self) -> None:
        self._engine = None

    def __enter__(self) -> YuNetDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
