"""Finding and reading what the other rooms write: recordings, run/eval
directories and model files. Each reader raises DashboardError with a
one-line message naming the file, so a page can show it and carry on."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from affect.images import VIDEO_SUFFIXES
from affect.metrics import MetricsError, check_metrics
from affect.recording import (
    BASE_COLUMNS,
    TAIL_COLUMNS,
    RecordingError,
    labels_from_columns,
    read_au_thresholds,
    read_recording,
)
from affect.spec import ModelSpec, SpecError
from dashboard.config import DEFAULT_MAX_ENTRIES, DashboardError
from inference.model_files import suffixes_for

RECORDING_SUFFIXES = (".csv", ".jsonl")
MODEL_SUFFIXES = suffixes_for("onnxruntime")  # the models the pages run (inference.model_files)
RUN_MARKERS = ("metrics.json", "predictions.csv", "checkpoint.pt", "history.csv")


class Found(list):
    """Paths a scan found; `truncated` when it stopped at its entry budget."""
    truncated: bool = False


def _scan(roots: list[Path], keep, max_entries: int) -> Found:
    """Files under `roots` (breadth first, names sorted) for which `keep(path)` holds.

    At most `max_entries` directory entries are looked at under each root, so a
    scanned `/` answers in a moment (with `truncated` set) instead of listing
    the disk, and one huge directory does not starve the others of the budget.
    Symlinked directories are not descended into; symlinked files are listed,
    and opening one is checked like any typed path."""
    found, listed = Found(), set()
    for root in roots:
        part = _scan_one(root, keep, max_entries)
        found.extend(p for p in part if p not in listed)  # nested roots: each file once
        listed.update(part)
        found.truncated = found.truncated or part.truncated
    return found


def _scan_one(root: Path, keep, max_entries: int) -> Found:
    found, seen = Found(), 0
    queue = [root] if root.is_dir() else []
    while queue:
        directory = queue.pop(0)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: skip it, the others still list
        subdirs = []
        for entry in entries:
            seen += 1
            if seen > max_entries:
                found.truncated = True
                return found
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        subdirs.append(Path(entry.path))
                elif entry.is_file() and keep(Path(entry.path)):
                    found.append(Path(entry.path))
            except OSError:
                continue
        queue[:0] = subdirs  # depth of a run folder first, as a reader browses
    return found


def _walk(roots: list[Path], suffixes: tuple[str, ...], max_entries: int = DEFAULT_MAX_ENTRIES,
          limit: int = 500, keep=None) -> Found:
    found = _scan(roots, lambda p: p.suffix.lower() in suffixes and (keep is None or keep(p)), max_entries)
    if len(found) > limit:  # a huge tree should not stall the page
        del found[limit:]
        found.truncated = True
    return found


RECORDING_KEYS = (*BASE_COLUMNS, *TAIL_COLUMNS)


def looks_like_recording(path: Path) -> bool:
    """Whether the file's header (CSV) or first object (JSONL) has the recording format's
    columns (affect.recording): a compare.csv or predictions.csv is not offered as one.
    Reads one line; a symlink out is not followed (the page's check refuses it later)."""
    if path.is_symlink():
        return True  # listed so that picking it is refused in one line, never read here
    try:
        with path.open("rb") as fh:
            first = fh.readline(64_000).decode("utf-8", errors="replace").strip()
    except OSError:
        return False
    if path.suffix.lower() == ".jsonl":
        try:
            keys = list(json.loads(first))
        except (ValueError, TypeError, RecursionError):
            return False
        keys += [f"p_{k}" for k in ("probabilities",) if k in keys]  # nested probabilities are allowed
    else:
        keys = [k.strip().strip('"') for k in first.split(",")]
    return all(k in keys for k in RECORDING_KEYS) and any(str(k).startswith("p_") for k in keys)


def find_recordings(roots: list[Path], max_entries: int = DEFAULT_MAX_ENTRIES) -> Found:
    return _walk(roots, RECORDING_SUFFIXES, max_entries, keep=looks_like_recording)


def find_videos(roots: list[Path], max_entries: int = DEFAULT_MAX_ENTRIES) -> Found:
    """Videos, plain ones first: a video with a recording of the same stem beside it is
    `realtime.cam --video-out` output (boxes already drawn), listed after the others."""
    found = _walk(roots, VIDEO_SUFFIXES, max_entries)
    ordered = Found(sorted(found, key=is_annotated_output))  # stable: scan order within each group
    ordered.truncated = found.truncated
    return ordered


def is_annotated_output(video: Path) -> bool:
    return any(video.with_suffix(s).is_file() for s in RECORDING_SUFFIXES)


def packaged_model_dir() -> Path | None:
    """realtime/models (the default model that ships), found without importing realtime."""
    spec = importlib.util.find_spec("realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path.resolve() if path.is_dir() else None


def model_roots() -> tuple[Path, ...]:
    """Where models may be opened from besides the scanned directories: the packaged one."""
    return tuple(d for d in [packaged_model_dir()] if d is not None)


def find_models(roots: list[Path], max_entries: int = DEFAULT_MAX_ENTRIES) -> Found:
    """The models found under `roots`, then the packaged model(s), always listed whatever
    the scanned directories hold (their scan has its own budget and is never cut)."""
    packaged = _walk(list(model_roots()), MODEL_SUFFIXES, max_entries)
    found = _walk(roots, MODEL_SUFFIXES, max_entries)
    listed = Found([*(p for p in found if p not in packaged), *packaged])
    listed.truncated = found.truncated
    return listed


def find_run_dirs(roots: list[Path], max_entries: int = DEFAULT_MAX_ENTRIES) -> Found:
    """Directories holding any file a training or eval run writes."""
    markers = _scan(roots, lambda p: p.name in RUN_MARKERS, max_entries)
    dirs = Found(sorted({p.parent for p in markers}))
    dirs.truncated = markers.truncated
    return dirs


# --- recordings --------------------------------------------------------------------

# Messages about a file never quote its content (a parser's detail can echo the
# bytes of a file that is not a recording): they say what kind of problem it is.

# Beyond these a value cannot come from realtime.cam: the plot would be nonsense.
MAX_T_MS = 7 * 24 * 3600 * 1000.0  # a week of recording
MAX_TRACK_ID = 2**31 - 1  # a tracker's counter; larger ones do not survive int conversion


def impossible_rows(df: pd.DataFrame, labels: list[str]) -> tuple[pd.Series, list[str]]:
    """Rows no recorder could have written, and what is wrong with them (counts
    per kind): valence/arousal outside [-1, 1], probabilities or confidence
    outside [0, 1], an expression that is not one of the labels, a time
    outside [0, a week], a negative frame, infinities."""
    checks = {
        "valence/arousal outside [-1, 1]": ~df[["valence", "arousal"]].abs().le(1.0 + 1e-6).all(axis=1),
        "probabilities outside [0, 1]": ~df[[f"p_{lab}" for lab in labels] + ["confidence"]]
        .apply(lambda c: c.between(-1e-6, 1.0 + 1e-6)).all(axis=1),
        "an expression that is not one of the labels": ~df["expression"].astype(str).isin(labels),
        "t_ms outside [0, one week]": ~df["t_ms"].between(0.0, MAX_T_MS),
        "a negative frame or track number": (df["frame"] < 0) | (df["track_id"] < 0),
        "a track number that is not a whole number below 2^31":
            (df["track_id"] > MAX_TRACK_ID) | (df["track_id"] % 1 != 0),
    }
    bad = pd.Series(False, index=df.index)
    problems = []
    for what, mask in checks.items():
        if mask.any():
            problems.append(f"{int(mask.sum())} with {what}")
            bad |= mask
    return bad, problems


@dataclass
class Recording:
    path: Path
    frame: pd.DataFrame  # one row per face per frame, CSV columns (impossible rows left out)
    labels: list[str]
    problems: list[str] = field(default_factory=list)  # what the left-out rows had wrong
    left_out: int = 0
    # the AU reader's own per-AU thresholds (`<stem>.au_thresholds.json` beside the file); None: 0.5
    au_thresholds: dict[str, float] | None = None

    @property
    def tracks(self) -> list[int]:
        return sorted(int(t) for t in self.frame["track_id"].unique())

    def warning(self) -> str | None:
        if not self.left_out:
            return None
        return (f"{self.path}: {self.left_out} of {self.left_out + len(self.frame)} rows left out, "
                f"impossible values ({'; '.join(self.problems)})")


def load_recording(path: Path) -> Recording:
    try:
        df = read_recording(path)  # the format's own reader: columns and numbers checked
    except RecordingError as exc:
        raise DashboardError(str(exc)) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. track_id = inf, which no int holds: the kind of problem, never the values
        raise DashboardError(f"{path}: impossible values in the recording ({type(exc).__name__})") from None
    labels = labels_from_columns([str(c) for c in df.columns])
    numeric = ["frame", "t_ms", "track_id", "valence", "arousal", "confidence", *(f"p_{lab}" for lab in labels)]
    df[numeric] = df[numeric].replace([math.inf, -math.inf], math.nan)
    bad_rows, problems = impossible_rows(df.fillna({"t_ms": -1.0}), labels)
    bad_rows |= df[numeric].isna().any(axis=1)
    if df[numeric].isna().any().any():
        problems.append(f"{int(df[numeric].isna().any(axis=1).sum())} with infinite values")
    kept = df[~bad_rows].copy()
    if kept.empty:
        raise DashboardError(f"{path}: every row has impossible values ({'; '.join(problems)})")
    kept["track_id"] = kept["track_id"].astype(int)
    try:
        thresholds = read_au_thresholds(path)
    except RecordingError as exc:
        raise DashboardError(str(exc)) from None
    return Recording(path, kept.sort_values(["t_ms", "track_id"]).reset_index(drop=True), labels,
                     problems, int(bad_rows.sum()), thresholds)


# --- run / eval directories --------------------------------------------------------


@dataclass
class RunDir:
    path: Path
    metrics: dict[str, Any]
    predictions: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    images: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def _allowed(path: Path, check) -> bool:
    """Whether a file inside an opened directory may be read: it too must
    resolve inside the scanned directories (a symlink in a run folder counts)."""
    if check is None:
        return True
    try:
        check(path)
        return True
    except DashboardError:
        return False


def read_metrics(metrics_path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise DashboardError(f"{metrics_path}: nested too deeply to be metrics") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise DashboardError(f"{metrics_path}: not valid JSON ({type(exc).__name__})") from None
    try:
        return check_metrics(metrics, str(metrics_path))
    except MetricsError as exc:
        raise DashboardError(str(exc)) from None
    except RecursionError:
        raise DashboardError(f"{metrics_path}: nested too deeply to be metrics") from None


def load_run(path: Path, check=None) -> RunDir:
    """A run/eval folder; `check(path)` (DashboardConfig.check) vets every file read from it."""
    if not path.is_dir():
        raise DashboardError(f"{path}: not a directory")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise DashboardError(f"{path}: no metrics.json (run `python -m train eval` to write one)")
    if check is not None:
        check(metrics_path)
    run = RunDir(path, read_metrics(metrics_path))
    for attr, name in (("predictions", "predictions.csv"), ("history", "history.csv")):
        csv_path = path / name
        if csv_path.is_file() and _allowed(csv_path, check):
            try:
                setattr(run, attr, pd.read_csv(csv_path))
            except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
                pass  # the page says it is missing; metrics.json still shows
    for image in sorted(path.glob("*.png")):
        if _allowed(image, check):
            run.images[image.name] = image
    return run


# --- model files -------------------------------------------------------------------


@dataclass
class ModelInfo:
    path: Path
    spec: ModelSpec
    bench: pd.DataFrame | None = None
    bench_markdown: str | None = None


def read_spec(path: Path) -> ModelSpec:
    import onnx  # only the Model and Live pages need it

    if path.suffix.lower() != ".onnx":  # the spec is read from ONNX metadata; a .pt is a protobuf error
        hint = (f"; export it with `python -m export onnx {path.name}`" if path.suffix.lower() == ".pt"
                else "")
        raise DashboardError(f"{path}: not an ONNX model (the Model page reads .onnx files){hint}")
    try:
        # The spec is in metadata_props; large external weights need not be read.
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, … depending on the damage
        raise DashboardError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        return ModelSpec.from_metadata(props, source=str(path))
    except SpecError as exc:
        raise DashboardError(str(exc)) from None


def _bench_frame(data: Any) -> pd.DataFrame | None:
    if isinstance(data, dict):
        for key in ("rows", "results", "backends"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.json_normalize(data)
    if isinstance(data, dict) and data:
        return pd.json_normalize(data)
    return None


def bench_files(path: Path) -> list[Path]:
    """Benchmark tables `python -m export bench --out STEM` may have left next to a model."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return [path.with_name(n) for n in (f"{path.name}.bench", f"{stem}.bench", "bench")]


def load_model(path: Path, check=None) -> ModelInfo:
    """A model's spec and the benchmark tables beside it; `check` vets those files too."""
    info = ModelInfo(path, read_spec(path))
    for stem in bench_files(path):
        json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
        if info.bench is None and json_path.is_file() and _allowed(json_path, check):
            try:
                info.bench = _bench_frame(json.loads(json_path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError):
                info.bench = None  # the markdown twin, if any, still shows
        if info.bench_markdown is None and md_path.is_file() and _allowed(md_path, check):
            info.bench_markdown = md_path.read_text(encoding="utf-8", errors="replace")
    return info
