"""What a corpus run reads: video files, folders of them (recursive) and manifest CSVs
(a `path` column and any metadata columns, e.g. participant, condition).

Each video becomes a `VideoInput` with a session key: the file's stem and a short
digest of its resolved path, so two `interview.mp4` in different folders never share
an output folder, and the same file always gets the same one (a rerun finds it).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affect.images import VIDEO_SUFFIXES

MANIFEST_SUFFIXES = (".csv",)
PATH_COLUMN = "path"


class InputError(ValueError):
    """An input that names nothing to read (a missing path, a manifest without `path`); one line."""


@dataclass
class VideoInput:
    path: Path  # resolved
    key: str  # the session folder's name under OUT/sessions
    metadata: dict[str, Any] = field(default_factory=dict)  # the manifest's other columns
    given: str = ""  # the path as the user (or the manifest) wrote it


def session_key(path: Path) -> str:
    """`<stem>-<8 hex digits of the resolved path>`: readable, and unique per file."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "video"
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:8]
    return f"{stem[:60]}-{digest}"


def _plain(value: Any) -> Any:
    """A manifest cell as a JSON-able Python value (missing → None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_manifest(path: Path) -> list[VideoInput]:
    """Rows of a manifest CSV; relative paths are relative to the manifest's folder."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype_backend="numpy_nullable")
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable manifest CSV ({type(exc).__name__})") from None
    if PATH_COLUMN not in df.columns:
        raise InputError(f"{path}: a manifest needs a '{PATH_COLUMN}' column (found {list(map(str, df.columns))})")
    meta_columns = [str(c) for c in df.columns if c != PATH_COLUMN]
    videos = []
    for row in df.astype(object).itertuples(index=False):
        cells = dict(zip(map(str, df.columns), row))
        given = cells[PATH_COLUMN]
        if given is None or (isinstance(given, float) and math.isnan(given)) or not str(given).strip():
            raise InputError(f"{path}: a row with an empty '{PATH_COLUMN}'")
        video = Path(str(given).strip()).expanduser()
        video = video if video.is_absolute() else path.parent / video
        videos.append(VideoInput(video.resolve(), session_key(video), {c: _plain(cells[c]) for c in meta_columns},
                                 str(given)))
    return videos


def find_videos(folder: Path) -> list[Path]:
    """Video files under `folder`, recursively, in path order (hidden folders and files left out:
    they hold partial outputs, not videos)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return found


def collect_inputs(inputs: list[str]) -> list[VideoInput]:
    """Every video the command line names, in order, each once (a video both in a folder and a
    manifest keeps the manifest's metadata)."""
    by_path: dict[Path, VideoInput] = {}
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            videos = [VideoInput(p.resolve(), session_key(p), {}, str(p)) for p in find_videos(path)]
            if not videos:
                raise InputError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            if not path.is_file():
                raise InputError(f"{path}: no such manifest")
            videos = read_manifest(path)
        elif path.exists():
            videos = [VideoInput(path.resolve(), session_key(path), {}, text)]
        else:
            raise InputError(f"{path}: no such file or folder")
        for video in videos:
            if video.path in by_path and not video.metadata:
                continue
            by_path[video.path] = video
    return list(by_path.values())
