"""Dataset loaders: each reads one on-disk layout into `Sample`s whose labels
go through `affect.labels` (the only label map), and `load_dataset(cfg)`, the
front door used by training configs."""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affect.crop import AS_GIVEN, face_crop_box
from affect.datasets.records import DataError, DatasetInfo, Sample, is_canonical, label_members
from affect.images import IMAGE_SUFFIXES
from affect.labels import (
    AFFECTNET_CODES,
    AFFECTNET_NO_VA,
    AFFECTNET_NON_EXPRESSION_CODES,
    EXPRESSIONS,
    FER2013_CLASSES,
    FER2013_CSV_CODES,
    canonical_name,
)

log = logging.getLogger(__name__)

# AffectNet's official CSV boxes are tight face boxes; crop them as given
# unless the model's crop rule says otherwise.
DEFAULT_CSV_CROP: dict[str, Any] = dict(AS_GIVEN)
AFFECTNET_CSV_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                         "facial_landmarks", "expression", "valence", "arousal")
CKPLUS_FILE = re.compile(r"^(S\d+)_(\d+)_(\d+)")
# 68-point (iBUG) eye ranges, for the roll of an aligned crop rule.
LEFT_EYE_68, RIGHT_EYE_68 = slice(36, 42), slice(42, 48)


# --- helpers -------------------------------------------------------------------------
def _existing_dir(root: str | os.PathLike) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{path}: dataset folder not found")
    return path


def _spread(items: Sequence, limit: int | None) -> list:
    """`limit` items spread evenly over the (sorted) list, so a small subset
    still covers every class folder and id range; deterministic."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        raise DataError(f"limit must be a positive number of samples, got {limit}")
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def _id_key(path: Path) -> tuple:
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _warn_skipped(name: str, count: int, reason: str, example: object) -> None:
    if count:
        log.warning("%s: skipped %d sample(s) with %s (e.g. %s)", name, count, reason, example)


def _affectnet_expression(raw: str, where: str) -> int:
    """Canonical index of an AffectNet code; -1 for codes 8-10 (not an expression)."""
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{where}: expression {raw!r} is not a number") from None
    if not math.isfinite(value):  # int(nan) would say "cannot convert float NaN" without the file
        raise DataError(f"{where}: expression {raw!r} is not a class code (expected 0-10)")
    code = int(value)
    if code != value:
        raise DataError(f"{where}: expression {raw!r} is not an integer code")
    if code in AFFECTNET_NON_EXPRESSION_CODES:
        return -1
    if code not in AFFECTNET_CODES:
        raise DataError(f"{where}: expression code {code} is not an AffectNet code "
                        "(0-7 classes, 8-10 none/uncertain/no-face)")
    return EXPRESSIONS.index(AFFECTNET_CODES[code])


def _affectnet_va(raw: str, where: str, what: str) -> float:
    """Valence or arousal; AffectNet's -2 ("no valid value") becomes nan."""
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{where}: {what} {raw!r} is not a number") from None
    if value == AFFECTNET_NO_VA or math.isnan(value):
        return math.nan
    if not -1.0 <= value <= 1.0:
        raise DataError(f"{where}: {what} {value} is outside [-1, 1] (and not AffectNet's -2 = missing)")
    return value


def _npy_value(path: Path) -> str:
    try:
        return str(np.load(path, allow_pickle=False).item())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read annotation ({exc})") from None


def _has_target(s: Sample) -> bool:
    return s.expression >= 0 or not (math.isnan(s.valence) and math.isnan(s.arousal))


def _info(name: str, samples: list[Sample], labels: Sequence[str], au_names: Sequence[str] = (),
          label_set: Sequence[str] = EXPRESSIONS, skipped: dict[str, int] | None = None) -> DatasetInfo:
    return DatasetInfo(
        name=name, samples=samples, labels=tuple(labels), label_set=tuple(label_set),
        has_va=any(not math.isnan(s.valence) or not math.isnan(s.arousal) for s in samples),
        has_landmarks=any(s.landmarks is not None for s in samples),
        au_names=tuple(au_names), skipped={k: v for k, v in (skipped or {}).items() if v},
    )


# --- AffectNet -----------------------------------------------------------------------
def load_affectnet(root: str | os.PathLike, limit: int | None = None, name: str = "affectnet") -> DatasetInfo:
    """AffectNet crops: `images/<id>.jpg` + `annotations/<id>_{exp,val,aro,lnd}.npy`.

    Codes 8-10 and valence/arousal -2 are masked; a sample with no usable
    target at all, or missing an exp/val/aro file, is skipped and counted.
    """
    root = _existing_dir(root)
    img_dir, ann_dir = root / "images", root / "annotations"
    if not img_dir.is_dir():
        raise DataError(f"{root}: no images/ folder (AffectNet layout: images/<id>.jpg, annotations/<id>_exp.npy)")
    files = _spread(sorted(_image_files(img_dir), key=_id_key), limit)
    ann_names = set(os.listdir(ann_dir)) if ann_dir.is_dir() else set()
    samples: list[Sample] = []
    missing: list[Path] = []
    no_target: list[Path] = []
    for img in files:
        stem = img.stem
        need = [f"{stem}_{k}.npy" for k in ("exp", "val", "aro")]
        absent = [n for n in need if n not in ann_names]
        if absent:
            missing.append(ann_dir / absent[0])
            continue
        exp_path, val_path, aro_path = (ann_dir / n for n in need)
        landmarks = None
        if f"{stem}_lnd.npy" in ann_names:
            lnd = np.load(ann_dir / f"{stem}_lnd.npy", allow_pickle=False).astype(np.float32)
            if lnd.size % 2:
                raise DataError(f"{ann_dir / f'{stem}_lnd.npy'}: {lnd.size} values are not x, y pairs")
            landmarks = lnd.reshape(-1, 2)
        s = Sample(
            path=str(img),
            expression=_affectnet_expression(_npy_value(exp_path), str(exp_path)),
            valence=_affectnet_va(_npy_value(val_path), str(val_path), "valence"),
            arousal=_affectnet_va(_npy_value(aro_path), str(aro_path), "arousal"),
            landmarks=landmarks, source=name,
        )
        if not _has_target(s):
            no_target.append(img)
            continue
        samples.append(s)
    _warn_skipped(name, len(missing), "a missing annotation file", missing[0] if missing else "")
    _warn_skipped(name, len(no_target), "no expression and no valence/arousal", no_target[0] if no_target else "")
    return _info(name, samples, EXPRESSIONS,
                 skipped={"missing_annotation": len(missing), "no_target": len(no_target)})


def _parse_points(text: str, where: str) -> np.ndarray | None:
    values = [v for v in re.split(r"[;,\s]+", text.strip()) if v]
    if not values:
        return None
    try:
        pts = np.array([float(v) for v in values], np.float32)
    except ValueError:
        raise DataError(f"{where}: facial_landmarks {text[:40]!r}... are not numbers") from None
    if pts.size % 2:
        raise DataError(f"{where}: {pts.size} landmark values are not x, y pairs")
    return pts.reshape(-1, 2)


def _crop_square(x: float, y: float, w: float, h: float, points: np.ndarray | None,
                 rule: Mapping[str, Any]) -> tuple[tuple[float, float, float, float], float]:
    """(x, y, side, side) and roll of the crop the rule gives for one face."""
    eyes = None
    if points is not None and len(points) == 68:
        eyes = (points[LEFT_EYE_68].mean(axis=0), points[RIGHT_EYE_68].mean(axis=0))
    box = face_crop_box(rule, box=(x, y, w, h), points=points, eyes=eyes)
    return tuple(float(v) for v in box.as_xywh()), float(box.angle)  # type: ignore[return-value]


def load_affectnet_csv(csv_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                       crop_rule: Mapping[str, Any] | None = None, limit: int | None = None,
                       name: str = "affectnet_csv") -> DatasetInfo:
    """AffectNet's official CSV (original images + face box): each face is
    cropped from `image_root/subDirectory_filePath` by `crop_rule` (the model
    spec's rule, default a plain box crop); rows whose image is missing are
    skipped and counted."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: AffectNet CSV not found")
    image_root = Path(image_root) if image_root is not None else csv_path.parent
    rule = dict(crop_rule) if crop_rule else dict(DEFAULT_CSV_CROP)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in AFFECTNET_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise DataError(f"{csv_path}: not an AffectNet CSV, missing column(s) {absent}")
        rows = [(reader.line_num, row) for row in reader]
    samples: list[Sample] = []
    missing: list[str] = []
    no_target = 0
    for line, row in _spread(rows, limit):
        where = f"{csv_path}:{line}"
        path = image_root / row["subDirectory_filePath"]
        if not path.is_file():
            missing.append(str(path))
            continue
        try:
            x, y, w, h = (float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
        except ValueError:
            raise DataError(f"{where}: face box is not numeric") from None
        points = _parse_points(row["facial_landmarks"] or "", where)
        try:
            box, angle = _crop_square(x, y, w, h, points, rule)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        s = Sample(
            path=str(path), expression=_affectnet_expression(row["expression"], where),
            valence=_affectnet_va(row["valence"], where, "valence"),
            arousal=_affectnet_va(row["arousal"], where, "arousal"),
            landmarks=points, source=name, box=box, angle=angle,
        )
        if not _has_target(s):
            no_target += 1
            continue
        samples.append(s)
    _warn_skipped(name, len(missing), "a missing image", missing[0] if missing else "")
    _warn_skipped(name, no_target, "no expression and no valence/arousal", csv_path)
    return _info(name, samples, EXPRESSIONS, skipped={"missing_image": len(missing), "no_target": no_target})


# --- FER2013 -------------------------------------------------------------------------
def _usages(usage: str | Sequence[str] | None) -> list[str] | None:
    if usage is None:
        return None
    return [usage] if isinstance(usage, str) else list(usage)


def load_fer2013_csv(csv_path: str | os.PathLike, usage: str | Sequence[str] | None = None,
                     limit: int | None = None, name: str = "fer2013") -> DatasetInfo:
    """The original `fer2013.csv` (`emotion,pixels,Usage`); images stay in
    memory (`Sample.pixels`), paths read `<csv>:<line>`."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: FER2013 CSV not found")
    wanted = _usages(usage)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "emotion" not in fields or "pixels" not in fields:
            raise DataError(f"{csv_path}: not a FER2013 CSV, need columns emotion,pixels[,Usage], got {fields}")
        if wanted is not None and "Usage" not in fields:
            raise DataError(f"{csv_path}: no Usage column to select {wanted} from")
        rows, seen = [], set()
        for row in reader:
            seen.add(row.get("Usage"))
            if wanted is None or row["Usage"] in wanted:
                rows.append((reader.line_num, row))
    if wanted is not None and not rows:
        raise DataError(f"{csv_path}: no rows with Usage in {wanted} (found {sorted(str(u) for u in seen)})")
    samples = []
    for line, row in _spread(rows, limit):
        where = f"{csv_path}:{line}"
        try:
            code = int(row["emotion"])
            values = np.array([int(v) for v in row["pixels"].split()], dtype=np.int64)
        except ValueError:
            raise DataError(f"{where}: emotion or pixels are not integers") from None
        if code not in FER2013_CSV_CODES:
            raise DataError(f"{where}: emotion code {code} is not a FER2013 code (0-6)")
        side = math.isqrt(values.size)
        if side * side != values.size or side == 0 or values.min() < 0 or values.max() > 255:
            raise DataError(f"{where}: pixels are not a square greyscale image of 0-255 values "
                            f"({values.size} values)")
        samples.append(Sample(
            path=where, expression=EXPRESSIONS.index(FER2013_CSV_CODES[code]), source=name,
            pixels=values.astype(np.uint8).reshape(side, side),
        ))
    return _info(name, samples, FER2013_CLASSES)


def load_fer2013_folders(root: str | os.PathLike, usage: str | Sequence[str] | None = "Training",
                         limit: int | None = None, name: str = "fer2013",
                         ferplus: str | os.PathLike | bool | None = None) -> DatasetInfo:
    """FER2013 as `root/<usage>/<class>/*.jpg` (usage None: `root/<class>/`;
    "auto": `root/Training/` if it exists, else `root` is one usage folder).

    Two Training file names appear under two classes; they are different
    pictures, so both are kept (paths stay unique; never key samples by file name).

    `ferplus` (a ferplus.csv path, or true for `root/ferplus.csv`): labels come from the
    FER+ votes instead of the folders (see `apply_ferplus`): 8 classes, Contempt included.
    """
    root = _existing_dir(root)
    if usage == "auto":  # a root that holds the usage folders, or one usage folder itself
        usage = "Training" if (root / "Training").is_dir() else None
    bases = [root / u for u in _usages(usage)] if usage is not None else [root]
    samples: list[Sample] = []
    skipped: dict[str, int] = {}
    votes_csv = None
    if ferplus:
        votes_csv = root / "ferplus.csv" if ferplus is True else Path(os.path.expanduser(str(ferplus)))
        if usage is None:
            raise DataError(f"{root}: FER+ votes need the usage folder (Training or PublicTest) to match "
                            "ferplus.csv's split column")
    for base in bases:
        if not base.is_dir():
            raise DataError(f"{base}: FER2013 usage folder not found")
        part = load_class_folders(base, name=name).samples
        if votes_csv is not None:
            part, counts = apply_ferplus(part, base, votes_csv, base.name, name)
            for k, v in counts.items():
                skipped[k] = skipped.get(k, 0) + v
        samples += part
    if votes_csv is not None:
        if not samples:
            raise DataError(f"{votes_csv}: no FER+ votes match the images under {bases[0]}")
        return _info(name, _spread(samples, limit), FERPLUS_EMOTIONS, skipped=skipped)
    return _info(name, _spread(samples, limit), FER2013_CLASSES)


# --- FER+ votes ----------------------------------------------------------------------
# ferplus.csv columns: split, file, then vote counts in this order (10 annotators per face).
FERPLUS_EMOTIONS: tuple[str, ...] = ("Neutral", "Happy", "Surprise", "Sad", "Anger", "Disgust", "Fear", "Contempt")
FERPLUS_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                    "contempt", "unknown", "not_face")


def read_ferplus_votes(csv_path: str | os.PathLike, split: str) -> tuple[dict[str, np.ndarray], int]:
    """{file under the split folder ("angry/Training_1.jpg"): 10 vote counts} for one split of
    ferplus.csv, and the number of unreadable rows skipped (votes not numbers)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: FER+ votes file (ferplus.csv) not found")
    votes: dict[str, np.ndarray] = {}
    bad = 0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in ("split", "file", *FERPLUS_COLUMNS) if c not in (reader.fieldnames or [])]
        if absent:
            raise DataError(f"{csv_path}: not a FER+ votes file, missing column(s) {absent}")
        for row in reader:
            if row["split"] != split:
                continue
            try:
                counts = np.array([float(row[c]) for c in FERPLUS_COLUMNS], np.float64)
            except (TypeError, ValueError):
                bad += 1
                continue
            if not np.isfinite(counts).all() or (counts < 0).any():
                bad += 1
                continue
            votes[row["file"].replace("\\", "/")] = counts
    return votes, bad


def apply_ferplus(samples: list[Sample], base: Path, csv_path: str | os.PathLike, split: str,
                  name: str) -> tuple[list[Sample], dict[str, int]]:
    """FER2013 folder samples relabelled by their FER+ votes: `expression` is the majority
    (argmax of the 10 counts; ties go to the first column), `soft` the vote distribution
    over the 8 emotions. Faces whose majority is unknown / not-a-face, and faces FER+
    does not list, are left out; rows naming no file of the folder, rows with no votes
    and unreadable rows are skipped and counted (never fatal)."""
    votes, unreadable = read_ferplus_votes(csv_path, split)
    by_file = {Path(s.path).relative_to(base).as_posix(): s for s in samples}
    order = [EXPRESSIONS.index(c) for c in FERPLUS_EMOTIONS]
    kept: list[Sample] = []
    skipped = {"ferplus_unreadable_row": unreadable, "ferplus_unknown_file": 0, "ferplus_no_votes": 0,
               "ferplus_not_an_expression": 0, "ferplus_unlisted": 0}
    for file, counts in votes.items():
        s = by_file.get(file)
        if s is None:
            skipped["ferplus_unknown_file"] += 1
            continue
        if counts.sum() <= 0:
            skipped["ferplus_no_votes"] += 1
            continue
        top = int(np.argmax(counts))
        if top >= len(FERPLUS_EMOTIONS):  # majority says unknown or not a face
            skipped["ferplus_not_an_expression"] += 1
            continue
        soft = np.zeros(len(EXPRESSIONS), np.float32)
        soft[order] = counts[: len(FERPLUS_EMOTIONS)] / counts[: len(FERPLUS_EMOTIONS)].sum()
        kept.append(Sample(path=s.path, expression=order[top], source=name, soft=soft))
    skipped["ferplus_unlisted"] = len(by_file) - len({f for f in votes if f in by_file})
    kept.sort(key=lambda s: s.path)
    for reason, count in skipped.items():
        if count and reason != "ferplus_unlisted":
            _warn_skipped(name, count, reason.removeprefix("ferplus_").replace("_", " "), csv_path)
    return kept, skipped


# --- AffectNet-96 and RAF-DB class folders --------------------------------------------
def load_affectnet96(root: str | os.PathLike, limit: int | None = None, name: str = "affectnet96") -> DatasetInfo:
    """AffectNet/FFHQ 96-px crops in class folders (anger, contempt, …, surprise): expression
    only (valence/arousal masked); the labels are model-predicted, so noisy."""
    return load_class_folders(root, limit=limit, name=name)


def load_rafdb(root: str | os.PathLike, usage: str | None = "auto", limit: int | None = None,
               name: str = "rafdb") -> DatasetInfo:
    """RAF-DB basic emotions as class folders (`root/train/<class>/` or `root/<class>/`): 7
    classes, no Contempt (masked in the loss), no valence/arousal."""
    root = _existing_dir(root)
    if usage == "auto":
        usage = "train" if (root / "train").is_dir() else None
    base = root / usage if usage else root
    if not base.is_dir():
        raise DataError(f"{base}: RAF-DB usage folder not found")
    return load_class_folders(base, limit=limit, name=name)


# --- CK+ -----------------------------------------------------------------------------
def _read_facs(path: Path) -> dict[int, float]:
    aus: dict[int, float] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                au, intensity = float(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
            except ValueError:
                raise DataError(f"{path}:{n}: expected 'AU intensity' numbers, got {line.strip()!r}") from None
            if len(parts) > 2 or au != int(au) or au <= 0:
                raise DataError(f"{path}:{n}: expected 'AU intensity', got {line.strip()!r}")
            aus[int(au)] = intensity
    return aus


def _facs_for(facs_root: Path, file_name: str, per_sequence: bool) -> Path | None:
    m = CKPLUS_FILE.match(file_name)
    if not m:
        return None
    subject, seq, frame = m.groups()
    folder = facs_root / subject / seq
    exact = folder / f"{subject}_{seq}_{frame}_facs.txt"
    if exact.is_file():
        return exact
    if per_sequence and folder.is_dir():
        # CK+ codes AUs on the peak frame only; CK+48 keeps the last frames
        # of each sequence, which are at or next to that peak.
        found = sorted(folder.glob("*_facs.txt"))
        return found[-1] if found else None
    return None


CKPLUS_TABLE = "labels.csv"
CKPLUS_TABLE_COLUMNS = ("file", "subject", "emotion", "group")


def _ckplus_target_set(labels: Sequence[str] | None, groups: set[str], csv_path: Path) -> str:
    """"group" when the run's/model's labels are the table's groups (negative, positive,
    surprise), else "emotion" (mapped by name onto the canonical order)."""
    if labels is None:
        return "emotion"
    wanted = {str(x).strip().lower() for x in labels}
    if wanted and wanted <= groups:
        return "group"
    if all(is_canonical(x) for x in labels):
        return "emotion"
    raise DataError(f"{csv_path}: labels {list(labels)} are neither expression classes nor the table's "
                    f"groups {sorted(groups)}")


def load_ckplus_table(root: str | os.PathLike, labels: Sequence[str] | None = None, limit: int | None = None,
                      name: str = "ckplus", peak_only: bool = False) -> DatasetInfo:
    """CK+ as `root/labels.csv` + `root/images/` (columns file, subject, emotion, group and the
    15 AUs of `affect.aus.AU_NAMES`, 0/1). The expression target follows `labels` (the run's
    or the model's): groups such as [negative, positive, surprise] read the `group` column,
    expression classes (or None) read `emotion`, mapped by name. AUs come in FACS order.
    A malformed table (a missing column, an AU value other than 0/1, a missing image, an
    unknown emotion) stops with one line naming the file and the row."""
    from affect.aus import AU_NAMES

    root = _existing_dir(root)
    csv_path = root / CKPLUS_TABLE
    image_dir = root / "images"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        absent = [c for c in (*CKPLUS_TABLE_COLUMNS, *AU_NAMES) if c not in fields]
        if absent:
            raise DataError(f"{csv_path}: missing column(s) {absent} (a CK+ table needs "
                            f"{', '.join(CKPLUS_TABLE_COLUMNS)}, {' '.join(AU_NAMES)})")
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    groups = {str(r["group"]).strip().lower() for _, r in rows}
    target = _ckplus_target_set(labels, groups, csv_path)
    if target == "group":
        label_set = tuple(labels)  # type: ignore[arg-type]
        index = {str(x).strip().lower(): i for i, x in enumerate(label_set)}
    else:
        label_set = EXPRESSIONS
    samples: list[Sample] = []
    for line, row in rows:
        where = f"{csv_path}:{line}"
        if peak_only and str(row.get("peak", "1")).strip() not in ("1", "1.0", "true", "True"):
            continue
        file = (row["file"] or "").strip()
        path = image_dir / file
        if not file or not path.is_file():
            raise DataError(f"{where}: image {path} not found")
        aus = []
        for au in AU_NAMES:
            value = (row[au] or "").strip()
            if value not in ("0", "1"):
                raise DataError(f"{where}: {au} is {value!r}, expected 0 or 1")
            aus.append(float(value))
        subject = (row["subject"] or "").strip()
        if not subject:
            raise DataError(f"{where}: subject is empty")
        if target == "group":
            key = str(row["group"]).strip().lower()
            expression = index.get(key, -1)
        else:
            try:
                expression = EXPRESSIONS.index(canonical_name(row["emotion"]))
            except ValueError:
                raise DataError(f"{where}: emotion {row['emotion']!r} is not an expression class") from None
        samples.append(Sample(path=str(path), expression=expression, aus=np.array(aus, np.float32),
                              subject=subject, source=name))
    present = sorted({s.expression for s in samples if s.expression >= 0})
    return _info(name, _spread(samples, limit), [label_set[i] for i in present], au_names=AU_NAMES,
                 label_set=label_set)


def load_ckplus(root: str | os.PathLike, facs_root: str | os.PathLike | None = None,
                limit: int | None = None, name: str = "ckplus",
                facs_per_sequence: bool = True, labels: Sequence[str] | None = None,
                peak_only: bool = False) -> DatasetInfo:
    """CK+ in either layout: `root/labels.csv` + `root/images/` (`load_ckplus_table`: emotion or
    group by `labels`, the 15 AUs), or class folders (CK+48: anger, contempt, …, surprise; no
    neutral) with subjects from file names `S005_001_00000011.png`; with `facs_root`
    (`FACS/S005/001/S005_001_00000011_facs.txt`), multi-label AUs "AU1", …;
    samples without a FACS file get no AU target (masked)."""
    if (Path(root) / CKPLUS_TABLE).is_file():
        if facs_root is not None:
            raise DataError(f"{root}: has {CKPLUS_TABLE} (AUs included); 'facs' is for the class-folder layout")
        return load_ckplus_table(root, labels=labels, limit=limit, name=name, peak_only=peak_only)
    info = load_class_folders(root, limit=limit, name=name)
    for s in info.samples:
        m = CKPLUS_FILE.match(Path(s.path).name)
        s.subject = m.group(1) if m else None
    au_names: tuple[str, ...] = ()
    if facs_root is not None:
        facs_root = _existing_dir(facs_root)
        coded = {id(s): _read_facs(p) for s in info.samples
                 if (p := _facs_for(facs_root, Path(s.path).name, facs_per_sequence)) is not None}
        numbers = sorted({au for aus in coded.values() for au in aus})
        au_names = tuple(f"AU{n}" for n in numbers)
        if not coded:
            log.warning("%s: no FACS files under %s match the images; no AU targets", name, facs_root)
        for s in info.samples:
            if id(s) in coded:
                # A listed AU is present (CK+ intensity 0 means present, unscored).
                s.aus = np.array([1.0 if n in coded[id(s)] else 0.0 for n in numbers], np.float32)
    no_subject = sum(s.subject is None for s in info.samples)
    if no_subject:
        log.warning("%s: %d file name(s) do not start with a CK+ subject id (S005_001_…)", name, no_subject)
    return _info(name, info.samples, info.labels, au_names=au_names, label_set=info.label_set)


# --- any class folders ---------------------------------------------------------------
def load_class_folders(root: str | os.PathLike, mapping: Mapping[str, str | None] | None = None,
                       groups: Mapping[str, Sequence[str]] | None = None, limit: int | None = None,
                       name: str | None = None) -> DatasetInfo:
    """`root/<class>/*.jpg`; without `mapping` every folder name must be an
    expression class (any alias in affect.labels); with it, `{folder: class
    or group name or None}` and unlisted folders are ignored.

    If any folder maps to a group (e.g. "negative"), `Sample.expression`
    indexes `info.label_set` (the mapped names); otherwise the canonical order.
    """
    root = _existing_dir(root)
    name = name or root.name
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    if not folders:
        raise DataError(f"{root}: no class folders (expected root/<class>/*.jpg)")
    if mapping is None:
        targets: dict[str, str] = {}
        for d in folders:
            try:
                targets[d.name] = canonical_name(d.name)
            except ValueError:
                raise DataError(f"{d}: folder name is not an expression class; give a mapping "
                                "{folder: class or group}") from None
    else:
        names = {d.name for d in folders}
        unknown = [k for k in mapping if k not in names]
        if unknown:
            raise DataError(f"{root}: mapping names folder(s) {unknown} that do not exist")
        targets = {}
        for folder, value in mapping.items():
            if value is None:
                continue
            try:
                label_members(value, groups)  # validates the name
            except DataError as exc:
                raise DataError(f"{root}: mapping {folder!r}: {exc}") from None
            # a class name or alias ("surprise", "sadness") counts as that class
            targets[folder] = canonical_name(value) if is_canonical(value) else value
        ignored = sorted(names - set(targets))
        if ignored:
            log.info("%s: ignoring folders not in the mapping: %s", name, ignored)
    if all(t in EXPRESSIONS for t in targets.values()):
        label_set: tuple[str, ...] = EXPRESSIONS
    else:
        label_set = tuple(dict.fromkeys(targets[d.name] for d in folders if d.name in targets))
    samples = []
    empty = []
    for d in folders:
        if d.name not in targets:
            continue
        index = label_set.index(targets[d.name])
        files = _image_files(d)
        if not files:
            empty.append(d.name)
        samples += [Sample(path=str(p), expression=index, source=name) for p in files]
    if empty and samples:  # the others still train; say which class the run will not learn from here
        log.warning("%s: class folder(s) %s hold no images; those classes get no samples from %s",
                    name, empty, root)
    if not samples:
        raise DataError(f"{root}: no images ({'/'.join(sorted(IMAGE_SUFFIXES))}) in the class folders")
    present = tuple(dict.fromkeys(targets[d.name] for d in folders if d.name in targets))
    return _info(name, _spread(samples, limit), present, label_set=label_set)


# --- front door ----------------------------------------------------------------------
CONFIG_KEYS = frozenset({"type", "root", "csv", "usage", "mapping", "groups", "limit", "weight",
                         "name", "facs", "crop", "ferplus", "peak_only"})
# Keys of a run's dataset entry that shape its splits and training (train.fit), not the loading:
# load_dataset accepts and ignores them, so a run's entries load as they are.
RUN_KEYS = frozenset({"role", "train_fraction", "fractions", "label_smoothing"})


def _load_affectnet_csv_cfg(cfg: Mapping[str, Any], root: Path, **kw: Any) -> DatasetInfo:
    csv_path = Path(cfg["csv"]) if cfg.get("csv") else root
    if csv_path.is_dir():
        raise DataError(f"{csv_path}: affectnet_csv needs 'csv' (the CSV file) and 'root' (the image folder)")
    if not csv_path.is_absolute() and not csv_path.exists():
        csv_path = root / csv_path
    image_root = root if root.is_dir() else csv_path.parent
    return load_affectnet_csv(csv_path, image_root, crop_rule=cfg.get("crop"), **kw)


LOADERS: dict[str, Callable[..., DatasetInfo]] = {
    "affectnet": lambda cfg, root, **kw: load_affectnet(root, **kw),
    "affectnet_csv": _load_affectnet_csv_cfg,
    "fer2013": lambda cfg, root, **kw: load_fer2013_folders(root, usage=cfg.get("usage", "auto"),
                                                            ferplus=cfg.get("ferplus"), **kw),
    "affectnet96": lambda cfg, root, **kw: load_affectnet96(root, **kw),
    "rafdb": lambda cfg, root, **kw: load_rafdb(root, usage=cfg.get("usage", "auto"), **kw),
    "fer2013_csv": lambda cfg, root, **kw: load_fer2013_csv(root, usage=cfg.get("usage"), **kw),
    "ckplus": lambda cfg, root, labels=None, **kw: load_ckplus(root, facs_root=cfg.get("facs"), labels=labels,
                                                               peak_only=bool(cfg.get("peak_only")), **kw),
    "folders": lambda cfg, root, **kw: load_class_folders(root, mapping=cfg.get("mapping"),
                                                          groups=cfg.get("groups"), **kw),
}


# Loaders whose target depends on the run's (or model's) labels: CK+'s table has an emotion and a group column.
LABEL_AWARE = frozenset({"ckplus"})


def load_dataset(cfg: Mapping[str, Any], labels: Sequence[str] | None = None) -> DatasetInfo:
    """Load one dataset from a config entry such as
    `{"type": "fer2013", "root": "../shared/data/fer2013", "usage": "Training", "limit": 500, "weight": 1}`;
    `labels` (the run's or the model's) choose the target where a dataset has several (CK+)."""
    kind = cfg.get("type")
    if kind not in LOADERS:
        raise DataError(f"dataset type {kind!r} is unknown; known: {sorted(LOADERS)}")
    unknown = sorted(set(cfg) - CONFIG_KEYS - RUN_KEYS)
    if unknown:
        raise DataError(f"dataset {kind}: unknown key(s) {unknown}; known: {sorted(CONFIG_KEYS | RUN_KEYS)}")
    if not cfg.get("root"):
        raise DataError(f"dataset {kind}: 'root' is missing")
    root = Path(os.path.expanduser(str(cfg["root"])))
    if not root.exists():
        raise DataError(f"{root}: dataset root not found (dataset {kind})")
    kw: dict[str, Any] = {"limit": cfg.get("limit")}
    if cfg.get("name"):
        kw["name"] = str(cfg["name"])
    if kind in LABEL_AWARE and labels is not None:
        kw["labels"] = list(labels)
    info = LOADERS[kind](cfg, root, **kw)
    weight = float(cfg.get("weight", 1.0))
    if not weight >= 0:
        raise DataError(f"dataset {info.name}: weight must be >= 0, got {cfg.get('weight')}")
    info.weight = weight
    if not info.samples:
        raise DataError(f"{root}: dataset {info.name} has no usable samples")
    return info
