"""Face images for parity checks, INT8/TensorRT calibration and the benchmark.

Accepts an AffectNet-layout folder (`images/<id>.jpg` + `annotations/<id>_exp.npy`,
`_val.npy`, `_aro.npy`), class folders (`<dir>/<class>/*.jpg`, e.g. FER2013's
`PublicTest`), or a plain folder of face crops (no labels). The two labelled
layouts are read by `affect.datasets`' loaders (torch-free, training reads them too),
images by `affect.images`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from affect.datasets.loaders import load_affectnet, load_class_folders
from affect.datasets.records import DataError
from affect.errors import first_line
from affect.images import IMAGE_SUFFIXES, UnreadableImage, read_image_file
from affect.labels import EXPRESSIONS, NAME_ALIASES
from affect.preprocess import prepare_batch, to_rgb
from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, ModelSpec
from export.common import ExportError

log = logging.getLogger(__name__)


@dataclass
class FaceSet:
    """RGB face crops with whatever labels the folder had (-1 / NaN where none)."""
    images: list[np.ndarray]
    expression: np.ndarray  # int64 [N], canonical index, -1 = no label
    valence: np.ndarray  # float32 [N], NaN = no label
    arousal: np.ndarray
    source: str
    skipped: int = 0
    generated: bool = False
    paths: list[str] = field(default_factory=list)
    # float32 [N, B] MediaPipe blendshape scores (NaN row: no face found), the
    # columns named by `blendshape_names` (None: in the model's order); None
    # until `score_blendshapes` runs. Only models whose spec lists blendshapes read them.
    blendshapes: np.ndarray | None = None
    blendshape_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_va(self) -> bool:
        return bool(np.isfinite(self.valence).any())

    def subset(self, index: slice | Sequence[int]) -> FaceSet:
        """The faces at `index` (a slice or positions), labels and blendshapes with them."""
        pick = list(range(len(self)))[index] if isinstance(index, slice) else [int(i) for i in index]
        return FaceSet([self.images[i] for i in pick], self.expression[pick], self.valence[pick],
                       self.arousal[pick], self.source, generated=self.generated,
                       paths=[self.paths[i] for i in pick] if self.paths else [],
                       blendshapes=None if self.blendshapes is None else self.blendshapes[pick],
                       blendshape_names=self.blendshape_names)


def _read_rgb(path: Path) -> np.ndarray | None:
    try:
        return to_rgb(read_image_file(path))
    except UnreadableImage:
        return None


def _listing(root: Path) -> tuple[str, list[tuple[Path, int, float, float]]]:
    """(layout, [(image path, expression, valence, arousal)]) for a folder, via affect.datasets' loaders."""
    try:
        if (root / "images").is_dir():
            info = load_affectnet(root)
        elif any(d.is_dir() and d.name.lower() in NAME_ALIASES for d in root.iterdir()):
            info = load_class_folders(root)
        else:
            rows = [(p, -1, float("nan"), float("nan")) for p in sorted(root.rglob("*"))
                    if p.suffix.lower() in IMAGE_SUFFIXES]
            return "images", rows
    except DataError as exc:
        raise ExportError(str(exc)) from None
    if tuple(info.label_set) != tuple(EXPRESSIONS):
        raise ExportError(f"{root}: class folders map to {list(info.label_set)}, not the 8 expressions")
    return info.name, [(Path(s.path), s.expression, s.valence, s.arousal) for s in info.samples]


def _run_split_listing(path: Path, split: str = "train") -> tuple[str, list[tuple[Path, int, float, float]]]:
    """One part of a run's `splits.json`. "train": calibration faces that are
    guaranteed not to be in the held-out part the model is evaluated on (no
    labels needed). "test": the held-out faces, with the labels their dataset
    folder gives (AffectNet annotations, class folder names); a face that two
    held-out parts list (FER2013 PublicTest under FER+ and folder labels) once."""
    import json

    try:
        paths = json.loads(path.read_text(encoding="utf-8"))[split]
        if not isinstance(paths, list):
            raise TypeError(f"{split!r} is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a run's splits.json with a {split!r} list ({exc})") from None
    paths = list(dict.fromkeys(str(p) for p in paths))
    if split != "test":
        return f"run {split} split", [(Path(p), -1, float("nan"), float("nan")) for p in paths]
    if not paths:
        raise ExportError(f"{path}: the run's held-out 'test' split is empty")
    labelled: dict[str, tuple[Path, int, float, float]] = {}
    for root in dict.fromkeys(_dataset_root(Path(p)) for p in paths):
        try:
            labelled.update((str(r[0]), r) for r in _listing(root)[1])
        except (ExportError, OSError):
            continue  # a folder gone since the fit: its faces count as unlabelled below
    return "run test split, held out", [labelled.get(p, (Path(p), -1, float("nan"), float("nan"))) for p in paths]


def _dataset_root(image: Path) -> Path:
    """The dataset folder an image path of a run's split belongs to: `ROOT/images/x.jpg`
    (AffectNet layout) and `ROOT/<class>/x.jpg` (class folders) both give ROOT."""
    return image.parent.parent


def load_faces(path: str | os.PathLike, limit: int | None = None, seed: int = 0, split: str = "train") -> FaceSet:
    """Read up to `limit` face crops (a seeded random subset, so classes mix)
    from `path`: a folder (AffectNet layout, class folders or plain images),
    one image, a `.txt` list of image paths, or a run's `splits.json` (its
    `split` part: "train" for calibration, "test" for the benchmark's held-out faces)."""
    root = Path(path)
    if not root.exists():
        raise ExportError(f"{root}: face image folder not found")
    if root.is_file() and root.suffix.lower() == ".json":
        layout, rows = _run_split_listing(root, split)
    elif root.is_file() and root.suffix.lower() == ".txt":  # one image path per line
        lines = root.read_text(encoding="utf-8").splitlines()
        layout, rows = "image list", [(Path(ln.strip()), -1, float("nan"), float("nan")) for ln in lines if ln.strip()]
    elif root.is_file():
        layout, rows = "images", [(root, -1, float("nan"), float("nan"))]
    else:
        layout, rows = _listing(root)
    if limit is not None and len(rows) > limit:
        pick = np.random.default_rng(seed).permutation(len(rows))
        # Draw extra candidates so a few unreadable files do not shrink the set.
        rows = [rows[i] for i in sorted(pick[: limit + max(8, limit // 10)])]
    images, keep, skipped = [], [], 0
    for row in rows:
        if limit is not None and len(images) >= limit:
            break
        image = _read_rgb(row[0])
        if image is None:
            skipped += 1
            continue
        images.append(image)
        keep.append(row)
    if not images:
        raise ExportError(f"{root}: no readable face images ({len(rows)} image files tried, {skipped} unreadable); "
                          "point --data at a folder of face crops or an AffectNet-layout dataset")
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", root, skipped)
    return FaceSet(images=images,
                   expression=np.array([r[1] for r in keep], np.int64),
                   valence=np.array([r[2] for r in keep], np.float32),
                   arousal=np.array([r[3] for r in keep], np.float32),
                   source=f"{root} ({layout})", skipped=skipped, paths=[str(r[0]) for r in keep])


def generated_faces(n: int = 8, size: int = 128, seed: int = 0) -> FaceSet:
    """Drawn face-like images, for a parity check when the user gives no data.

    They exercise the graph with image-like statistics, but they are not faces
    the model was trained on: callers say so in their log line.
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        img = np.full((size, size, 3), rng.integers(60, 200, 3), np.uint8)
        c = size // 2
        skin = tuple(int(v) for v in rng.integers(120, 240, 3))
        cv2.ellipse(img, (c, c), (int(size * 0.33), int(size * 0.42)), 0, 0, 360, skin, -1)
        for dx in (-1, 1):
            cv2.circle(img, (c + dx * size // 7, int(size * 0.42)), max(2, size // 20), (30, 30, 30), -1)
        mouth = int(rng.integers(0, 60))
        cv2.ellipse(img, (c, int(size * 0.68)), (size // 6, max(1, size // 16)), 0, mouth, 180 - mouth,
                    (120, 40, 40), max(1, size // 40))
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        images.append(img)
    nan = np.full(n, np.nan, np.float32)
    return FaceSet(images, np.full(n, -1, np.int64), nan, nan.copy(), "generated face-like images", generated=True)


def faces_or_generated(path: str | os.PathLike | None, limit: int, purpose: str) -> FaceSet:
    if path is not None:
        return load_faces(path, limit=limit)
    log.warning("%s: no face images given (--data); using %d generated face-like images instead — "
                "pass real face crops for a meaningful check", purpose, min(limit, 8))
    return generated_faces(min(limit, 8))


def batches(faces: FaceSet, spec: ModelSpec, batch_size: int) -> Iterator[np.ndarray]:
    """Model inputs [B, 3, S, S] via affect.preprocess, the one normalisation."""
    for start in range(0, len(faces), batch_size):
        yield prepare_batch(faces.images[start:start + batch_size], spec)


def score_blendshapes(faces: FaceSet, names: Sequence[str], face_model: str | os.PathLike | None = None,
                       seed: int = 0) -> FaceSet:
    """Set `faces.blendshapes` (float32 [N, len(names)]) and return `faces`.

    Real faces get the scores of MediaPipe's FaceLandmarker on the crops the
    set holds (`affect.blendshapes.CropBlendshapes`, the code training and the
    camera use), NaN rows where it finds no face; the landmarker bundle is
    `face_model`, else `affect.face_model.resolve_face_model()` ($AFFECTCAM_FACE_MODEL,
    the user cache, a download). Generated faces get seeded uniform scores in
    [0, 1] (no landmarker can read a drawing).
    """
    names = list(names)
    faces.blendshape_names = names
    if faces.generated:
        faces.blendshapes = np.random.default_rng(seed).random((len(faces), len(names)), dtype=np.float32)
        return faces
    from affect.blendshapes import LANDMARKER_CROP, CropBlendshapes
    from affect.face_model import FaceModelError, resolve_face_model
    from affect.preprocess import resize_square

    try:
        bundle = resolve_face_model(face_model)
    except FaceModelError as exc:
        raise ExportError(f"the model takes blendshapes, which need MediaPipe's face landmarker: {exc}") from None
    try:
        with CropBlendshapes(bundle) as landmarker:
            faces.blendshapes = landmarker.rows([resize_square(to_rgb(im), LANDMARKER_CROP) for im in faces.images],
                                                names)
    except (RuntimeError, ValueError, OSError) as exc:  # MediaPipe refusing the bundle
        raise ExportError(f"{bundle}: MediaPipe cannot run this face model ({first_line(exc)})"
                          ) from None
    found = int(np.isfinite(faces.blendshapes).all(axis=1).sum())
    log.info("%s: the face landmarker found blendshapes for %d of %d faces", faces.source, found, len(faces))
    if found < len(faces) / 2:
        log.warning("%s: no blendshapes for %d of %d faces; those run image-only", faces.source,
                    len(faces) - found, len(faces))
    return faces


# Parity checks and INT8 calibration of a model that takes blendshapes feed
# every NAN_EVERY-th face a NaN row ("no blendshapes", the camera's detector
# path), so that path is compared and calibrated too.
NAN_EVERY = 4


def with_nan_rows(rows: np.ndarray, every: int = NAN_EVERY, offset: int = NAN_EVERY - 1) -> np.ndarray:
    """A copy of `rows` with every `every`-th row (from `offset`) set to NaN:
    faces without blendshapes, so checks and calibration also take that path."""
    rows = np.array(rows, np.float32, copy=True)
    rows[offset::every] = np.nan
    return rows


def blendshape_input(faces: FaceSet, spec: ModelSpec, model: str | os.PathLike) -> np.ndarray | None:
    """`faces.blendshapes` as the model's input (`model` names its file in
    errors): float32 [N, B], columns in the spec's order (picked by name when
    the set names its columns); None for an image-only model."""
    width = len(spec.blendshapes)
    if not width:
        return None
    rows = faces.blendshapes
    if rows is None:
        raise ExportError(f"{model}: the model takes {width} blendshapes per face but none were computed for "
                          f"{faces.source} (export.faces.score_blendshapes)")
    rows = np.asarray(rows)
    names = faces.blendshape_names
    if names is not None and list(names) != list(spec.blendshapes) and rows.ndim == 2 and rows.shape[1] == len(names):
        missing = [n for n in spec.blendshapes if n not in names]
        if missing:
            raise ExportError(f"{model}: the model takes blendshapes {missing[:3]} that {faces.source} was not "
                              "scored for")
        rows = rows[:, [list(names).index(n) for n in spec.blendshapes]]
    if rows.ndim != 2 or rows.shape[1] != width or rows.shape[0] != len(faces):
        raise ExportError(f"{model}: blendshapes have shape {list(rows.shape)}, the model takes [{len(faces)}, "
                          f"{width}] (one row per face, in the order of its affect.blendshapes names)")
    return np.ascontiguousarray(rows, np.float32)


def feeds(faces: FaceSet, spec: ModelSpec, batch_size: int, model: str | os.PathLike
          ) -> Iterator[dict[str, np.ndarray]]:
    """ONNX Runtime feeds {input name: array}: the preprocessed images, and
    `blendshapes` rows when the model takes them (checked by `blendshape_input`)."""
    rows = blendshape_input(faces, spec, model)
    for start, x in zip(range(0, len(faces), batch_size), batches(faces, spec, batch_size)):
        feed = {INPUT_NAME: x}
        if rows is not None:
            feed[INPUT_BLENDSHAPES] = rows[start:start + len(x)]
        yield feed
