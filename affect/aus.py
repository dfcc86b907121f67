"""Facial action units (FACS): the 15 AUs affectcam reports, and the blendshape → AU map.

The 15 AUs are the ones CK+'s FACS coding gives often enough to learn (the
columns of `../shared/data/ckplus/labels.csv`), in FACS order. Every room uses
these names: the training loader's targets, a model's `action_units` output
(`affect.au_names` metadata), the camera's recording columns `AU1` … `AU27`.

The blendshape map reads the AUs from MediaPipe's 52 face blendshapes with one
logistic regression per AU. It is a small JSON file (never a pickle): the AU
and blendshape name orders, per-AU standardisation, coefficients and
intercepts, the version and the figures it was fitted with. The file shipped
in `realtime/models/` is checked against the sha256 recorded here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# FACS number → name (Ekman & Friesen), for the 15 AUs CK+'s coding gives often enough.
AU_DESCRIPTIONS: dict[str, str] = {
    "AU1": "inner brow raiser", "AU2": "outer brow raiser", "AU4": "brow lowerer",
    "AU6": "cheek raiser", "AU7": "lid tightener", "AU11": "nasolabial deepener",
    "AU12": "lip corner puller", "AU14": "dimpler", "AU15": "lip corner depressor",
    "AU17": "chin raiser", "AU23": "lip tightener", "AU24": "lip pressor",
    "AU25": "lips part", "AU26": "jaw drop", "AU27": "mouth stretch",
}
AU_NAMES: tuple[str, ...] = tuple(AU_DESCRIPTIONS)  # FACS order; also the recording's column names

# An AU counts as active (overlay, dashboard "most active", F1) at this probability, unless the
# model carries its own per-AU thresholds (`ModelSpec.au_thresholds`, `affect.au_thresholds`).
AU_THRESHOLD = 0.5
# How `choose_au_thresholds` picks an AU's threshold on labelled validation faces: the one that
# maximises that AU's F1 (the figure AU detection is judged by), or its balanced accuracy.
THRESHOLD_RULES = ("f1", "balanced_accuracy")
# An AU with fewer validation positives (or negatives) than this keeps AU_THRESHOLD: a threshold
# fitted to one or two sequences is noise. CK+ gives 3 faces per sequence, so 5 faces = 2 sequences.
MIN_THRESHOLD_FACES = 5

AU_MAP_FORMAT = "affectcam.au_map"
AU_MAP_VERSION = 1
# The map shipped with the camera (fitted by `python -m train au-map` on ../shared/data/ckplus).
DEFAULT_AU_MAP = Path(__file__).resolve().parent.parent / "realtime" / "models" / "blendshape_aus.json"
DEFAULT_AU_MAP_SHA256 = "e48e6764a3f471869da1fe6cbe6252d568f543ed8bfe03489986788038651673"


class AuMapError(ValueError):
    """An AU map file that cannot be used; the message is one line naming the file."""


def au_number(name: str) -> int:
    """FACS number of an AU name ("AU12" → 12)."""
    text = name.strip().upper()
    if not text.startswith("AU") or not text[2:].isdigit():
        raise ValueError(f"{name!r} is not an action-unit name like 'AU12'")
    return int(text[2:])


def threshold_array(thresholds: float | Sequence[float] | Mapping[str, float] | None,
                    names: Sequence[str] = AU_NAMES) -> np.ndarray:
    """[A] decision thresholds for `names`: one number for all, a sequence in `names`' order, or
    a {name: threshold} mapping (AUs it lacks: AU_THRESHOLD); None or [] = AU_THRESHOLD for all."""
    if thresholds is None or (not isinstance(thresholds, Mapping) and np.ndim(thresholds) == 1
                              and len(thresholds) == 0):
        return np.full(len(names), AU_THRESHOLD)
    if isinstance(thresholds, Mapping):
        return np.array([float(thresholds.get(n, AU_THRESHOLD)) for n in names])
    t = np.asarray(thresholds, np.float64)
    if t.ndim == 0:
        return np.full(len(names), float(t))
    if t.shape != (len(names),):
        raise ValueError(f"{t.size} AU thresholds for {len(names)} AUs")
    return t


def active_aus(probs: Sequence[float] | np.ndarray, names: Sequence[str] = AU_NAMES,
               threshold: float | Sequence[float] | Mapping[str, float] | None = AU_THRESHOLD) -> list[str]:
    """The AU names whose probability reaches its threshold (one for all, or one per AU:
    `threshold_array`), most probable first."""
    p = np.asarray(probs, np.float64)
    t = threshold_array(threshold, names)
    order = np.argsort(-np.nan_to_num(p, nan=-1.0), kind="stable")
    return [names[i] for i in order if np.isfinite(p[i]) and p[i] >= t[i]]


def choose_au_thresholds(y_true: np.ndarray, probs: np.ndarray, rule: str = "f1",
                         min_faces: int = MIN_THRESHOLD_FACES) -> tuple[list[float], list[str]]:
    """Per-AU decision thresholds chosen on labelled faces (a run's VALIDATION part, never the
    part that is reported): for each AU the threshold on a 0.01 grid in [0.05, 0.95] that
    maximises `rule` ("f1" or "balanced_accuracy"; the middle of the longest run of best grid
    points, so ties do not pull it to an edge), or AU_THRESHOLD where the AU has fewer than `min_faces`
    positive or negative annotated faces. `y_true` [N, A] 0/1 (NaN = not annotated), `probs`
    [N, A]. Returns (thresholds, per-AU source: "<rule>" or "default (k positives)")."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"AU threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    t = np.asarray(y_true, np.float64)
    p = np.asarray(probs, np.float64)
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"AU thresholds: targets {t.shape} and probabilities {p.shape} differ")
    grid = np.round(np.arange(0.05, 0.9501, 0.01), 2)
    thresholds, sources = [], []
    for j in range(t.shape[1]):
        m = np.isfinite(t[:, j]) & np.isfinite(p[:, j])
        y = t[m, j] > 0.5
        pos, neg = int(y.sum()), int((~y).sum())
        if pos < min_faces or neg < min_faces:
            thresholds.append(AU_THRESHOLD)
            sources.append(f"default ({pos} positives, {neg} negatives)")
            continue
        pred = p[m, j][None, :] >= grid[:, None]  # [G, n]
        tp = (pred & y).sum(axis=1)
        fp = (pred & ~y).sum(axis=1)
        fn = pos - tp
        if rule == "f1":
            value = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        else:
            value = (tp / pos + (neg - fp) / neg) / 2
        best = np.flatnonzero(value >= value.max() - 1e-12)
        run = max(np.split(best, np.flatnonzero(np.diff(best) > 1) + 1), key=len)  # the longest unbroken run
        thresholds.append(float(grid[run[len(run) // 2]]))
        sources.append(rule)
    return thresholds, sources


@dataclass
class AuMap:
    """Per-AU logistic regression over standardised blendshape scores."""
    au_names: tuple[str, ...]
    blendshapes: tuple[str, ...]
    mean: np.ndarray  # [B]
    scale: np.ndarray  # [B]
    coef: np.ndarray  # [A, B]
    intercept: np.ndarray  # [A]
    version: int = AU_MAP_VERSION
    training: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """[N, B] blendshape rows (this map's name order; NaN row = no blendshapes) → [N, A]
        AU probabilities, NaN where the row had none."""
        x = np.asarray(rows, np.float64)
        if x.ndim == 1:
            x = x[None]
        if x.shape[1] != len(self.blendshapes):
            raise ValueError(f"{self.path or 'AU map'}: rows have {x.shape[1]} scores, "
                             f"the map reads {len(self.blendshapes)}")
        z = (x - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        out = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        out[~np.isfinite(x).all(axis=1)] = np.nan
        return out

    def predict_scores(self, scores: Mapping[str, float] | None) -> np.ndarray:
        """One face's blendshape dict (None: none found) → [A] probabilities (NaN without)."""
        from affect.blendshapes import blendshape_row

        return self.predict(blendshape_row(scores, self.blendshapes)[None])[0]

    def to_dict(self) -> dict[str, Any]:
        return {"format": AU_MAP_FORMAT, "version": self.version, "au_names": list(self.au_names),
                "blendshapes": list(self.blendshapes), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "training": self.training}


def save_au_map(au_map: AuMap, path: str | os.PathLike) -> str:
    """Write the map as JSON (atomic); returns its sha256."""
    from affect.files import atomic_write_text, sha256_of

    atomic_write_text(Path(path), json.dumps(au_map.to_dict(), indent=1) + "\n")
    return sha256_of(path)


def _array(data: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        arr = np.asarray(data[key], np.float64)
    except (KeyError, TypeError, ValueError):
        raise AuMapError(f"{path}: AU map has no numeric {key!r}") from None
    if arr.shape != shape or not np.isfinite(arr).all():
        raise AuMapError(f"{path}: AU map {key!r} has shape {arr.shape}, expected {shape} finite numbers")
    return arr


def load_au_map(path: str | os.PathLike | None = None, sha256: str | None = None) -> AuMap:
    """Read an AU map file (default: the shipped one, checked against its recorded sha256);
    AuMapError with one line naming the file for anything unusable."""
    from affect.files import sha256_of

    if path is None:
        path, sha256 = DEFAULT_AU_MAP, sha256 or DEFAULT_AU_MAP_SHA256
    path = Path(path)
    if not path.is_file():
        raise AuMapError(f"{path}: AU map file not found")
    if sha256 is not None and sha256_of(path) != sha256:
        raise AuMapError(f"{path}: AU map file is corrupt or changed (sha256 {sha256_of(path)[:12]}…, "
                         f"expected {sha256[:12]}…)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuMapError(f"{path}: not an AU map (not JSON: {str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format") != AU_MAP_FORMAT:
        raise AuMapError(f"{path}: not an AU map (format {data.get('format') if isinstance(data, dict) else None!r}, "
                         f"expected {AU_MAP_FORMAT!r})")
    if data.get("version") != AU_MAP_VERSION:
        raise AuMapError(f"{path}: AU map version {data.get('version')!r}; this affectcam reads {AU_MAP_VERSION}")
    aus, shapes = data.get("au_names"), data.get("blendshapes")
    if not (isinstance(aus, list) and aus and all(isinstance(a, str) for a in aus)
            and isinstance(shapes, list) and shapes and all(isinstance(b, str) for b in shapes)):
        raise AuMapError(f"{path}: AU map needs lists 'au_names' and 'blendshapes' of names")
    a, b = len(aus), len(shapes)
    scale = _array(data, "scale", (b,), path)
    if (scale <= 0).any():
        raise AuMapError(f"{path}: AU map 'scale' must be positive")
    return AuMap(tuple(aus), tuple(shapes), _array(data, "mean", (b,), path), scale,
                 _array(data, "coef", (a, b), path), _array(data, "intercept", (a,), path),
                 version=AU_MAP_VERSION, training=dict(data.get("training") or {}), path=str(path))


def fit_au_map(rows: np.ndarray, targets: np.ndarray, blendshapes: Sequence[str],
               au_names: Sequence[str] = AU_NAMES, c: float = 0.1, balanced: bool = False,
               training: dict[str, Any] | None = None) -> AuMap:
    """Fit one L2 logistic regression per AU (scikit-learn) on [N, B] blendshape rows (rows
    with NaN are left out) and [N, A] 0/1 targets. Unbalanced classes and C 0.1 by default:
    the best micro-F1 and binary accuracy of six settings in CK+'s subject-grouped
    cross-validation (docs/BENCHMARKS.md, "AUs")."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(rows, np.float64)
    y = np.asarray(targets, np.float64)
    keep = np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    coef = np.zeros((len(au_names), x.shape[1]))
    intercept = np.zeros(len(au_names))
    for j in range(len(au_names)):
        yj = y[:, j] > 0.5
        if yj.all() or not yj.any():  # one class only: a constant probability
            p = min(max(yj.mean(), 1e-3), 1 - 1e-3)
            intercept[j] = np.log(p / (1 - p))
            continue
        model = LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=3000)
        model.fit(z, yj)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return AuMap(tuple(au_names), tuple(blendshapes), mean, scale, coef, intercept,
                 training=dict(training or {}, n=int(keep.sum()), c=c, balanced=balanced))
