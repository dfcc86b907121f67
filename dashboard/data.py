"""Finding and reading what the other rooms write: recordings, run/eval
directories and model files. Each reader raises DashboardError with a
one-line message naming the file, so a page can show it and carry on."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from affect.recording import RecordingError, labels_from_columns, read_recording
from affect.spec import ModelSpec, SpecError
from dashboard.config import DashboardError

RECORDING_SUFFIXES = (".csv", ".jsonl")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MODEL_SUFFIXES = (".onnx",)
RUN_MARKERS = ("metrics.json", "predictions.csv", "checkpoint.pt", "history.csv")


def _walk(roots: list[Path], suffixes: tuple[str, ...], limit: int = 500) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in suffixes and path.is_file():
                found.append(path)
                if len(found) >= limit:  # a huge tree should not stall the page
                    return found
    return found


def find_recordings(roots: list[Path]) -> list[Path]:
    return [p for p in _walk(roots, RECORDING_SUFFIXES) if p.name != "predictions.csv"
            and p.name != "history.csv" and not p.name.endswith(".bench.csv")]


def find_videos(roots: list[Path]) -> list[Path]:
    return _walk(roots, VIDEO_SUFFIXES)


def packaged_model_dir() -> Path | None:
    """realtime/models (the default model that ships), found without importing realtime."""
    spec = importlib.util.find_spec("realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path if path.is_dir() else None


def find_models(roots: list[Path]) -> list[Path]:
    extra = [d for d in [packaged_model_dir()] if d is not None]
    return _walk([*roots, *extra], MODEL_SUFFIXES)


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Directories holding any file a training or eval run writes."""
    dirs: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for marker in RUN_MARKERS:
            dirs.update(p.parent for p in root.rglob(marker))
    return sorted(dirs)


# --- recordings --------------------------------------------------------------------


@dataclass
class Recording:
    path: Path
    frame: pd.DataFrame  # one row per face per frame, CSV columns
    labels: list[str]

    @property
    def tracks(self) -> list[int]:
        return sorted(int(t) for t in self.frame["track_id"].unique())


def load_recording(path: Path) -> Recording:
    try:
        df = read_recording(path)
    except RecordingError as exc:
        raise DashboardError(str(exc)) from None
    return Recording(path, df, labels_from_columns(df.columns))


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


def load_run(path: Path) -> RunDir:
    if not path.is_dir():
        raise DashboardError(f"{path}: not a directory")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise DashboardError(f"{path}: no metrics.json (run `python -m train eval` to write one)")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DashboardError(f"{metrics_path}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise DashboardError(f"{metrics_path}: expected a JSON object, got {type(metrics).__name__}")
    run = RunDir(path, metrics)
    for attr, name in (("predictions", "predictions.csv"), ("history", "history.csv")):
        csv_path = path / name
        if csv_path.is_file():
            try:
                setattr(run, attr, pd.read_csv(csv_path))
            except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
                pass  # the page says it is missing; metrics.json still shows
    for image in sorted(path.glob("*.png")):
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


def load_model(path: Path) -> ModelInfo:
    info = ModelInfo(path, read_spec(path))
    for stem in bench_files(path):
        json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
        if info.bench is None and json_path.is_file():
            try:
                info.bench = _bench_frame(json.loads(json_path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError):
                info.bench = None  # the markdown twin, if any, still shows
        if info.bench_markdown is None and md_path.is_file():
            info.bench_markdown = md_path.read_text(encoding="utf-8", errors="replace")
    return info
