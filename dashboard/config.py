"""Which directories the dashboard may read, and the check that keeps it there.

The directories are the owner's choice, fixed when the server starts:

    streamlit run streamlit_app.py -- runs recordings /data/videos   # command line (after `--`)
    AFFECTCAM_DASHBOARD_DIRS=runs:recordings streamlit run streamlit_app.py
    dashboard.toml (or $AFFECTCAM_DASHBOARD_CONFIG): dirs = ["runs", "recordings"], max_entries = 20000

(first found wins, in that order; default runs/ and recordings/). The other
launch options, after `--` or in dashboard.toml:

    --allow-save / allow_save = true      the Live page may save recordings into these dirs (off by default)
    --face-model PATH / face_model = "…"  MediaPipe face_landmarker.task for the Live page
                                          (else $AFFECTCAM_FACE_MODEL, the user cache, a download)
    --max-video-side N / max_video_side   longest video side the Live page decodes (default 3840)

A malformed config file or option refuses to start the dashboard (one line,
exit status 2) instead of showing the error on every page. A visitor
can narrow them in the sidebar, never widen them, and every file the page
opens, typed or picked from a list, must resolve (after symlinks) inside the
directories in force, so a demo machine does not become a file browser for
its whole disk.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ENV_DIRS = "AFFECTCAM_DASHBOARD_DIRS"  # os.pathsep-separated, e.g. "runs:recordings:/data/videos"
ENV_FACE_MODEL = "AFFECTCAM_FACE_MODEL"  # realtime's own variable, honoured here too
ENV_CONFIG = "AFFECTCAM_DASHBOARD_CONFIG"  # a TOML file; default ./dashboard.toml when it exists
CONFIG_FILE = "dashboard.toml"
DEFAULT_DIRS = ("runs", "recordings")
# Directory entries looked at per scan: a scanned `/` must not tie the server up for minutes.
DEFAULT_MAX_ENTRIES = 20_000
# Longest side of a video the Live page decodes: an 8K frame costs 100 MB per copy, and a
# 16 KB file can hold many of them (4K UHD still passes).
DEFAULT_MAX_VIDEO_SIDE = 3840


class DashboardError(ValueError):
    """Input the dashboard cannot show; the message is one line naming the file."""


class PathNotAllowed(DashboardError):
    """A path outside the configured directories."""


@dataclass(frozen=True)
class OwnerSettings:
    """What the owner chose at launch: the most the page may ever read."""
    dirs: tuple[str, ...]
    max_entries: int = DEFAULT_MAX_ENTRIES
    source: str = "default"  # where the directories came from, shown in the sidebar
    allow_save: bool = False  # the Live page may write recordings into the dirs
    face_model: str | None = None  # the Live page's face model (else $AFFECTCAM_FACE_MODEL, cache, download)
    max_video_side: int = DEFAULT_MAX_VIDEO_SIDE

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(resolve(d) for d in self.dirs)


def resolve(path: str | Path) -> Path:
    # Resolved once here so symlinks and ".." cannot step outside later.
    if "\x00" in str(path):  # the OS cannot name it (ValueError deep in pathlib otherwise)
        raise PathNotAllowed(f"{_printable(path)}: a path with a NUL byte; refused")
    return Path(path).expanduser().resolve()


def _printable(path: str | Path) -> str:
    """The path as the page may quote it: control characters (NUL, newlines) escaped."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _split_env(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(os.pathsep) if part.strip()]


def default_dirs(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    raw = env.get(ENV_DIRS, "").strip()
    return _split_env(raw) if raw else list(DEFAULT_DIRS)


def _read_config_file(path: Path) -> dict:
    if tomllib is None:
        raise DashboardError(f"{path}: a dashboard config file needs Python 3.11 (tomllib); give the "
                             f"directories after `--` or in ${ENV_DIRS}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DashboardError(f"{path}: not a readable TOML dashboard config ({type(exc).__name__})") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise DashboardError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
    dirs, limit = data.get("dirs"), data.get("max_entries", DEFAULT_MAX_ENTRIES)
    if dirs is not None and not (isinstance(dirs, list) and all(isinstance(d, str) and "\x00" not in d
                                                                 for d in dirs)):
        raise DashboardError(f"{path}: dirs must be a list of directory names")
    if not _positive_int(limit):
        raise DashboardError(f"{path}: max_entries must be a positive whole number")
    side = data.get("max_video_side", DEFAULT_MAX_VIDEO_SIDE)
    if not _positive_int(side):
        raise DashboardError(f"{path}: max_video_side must be a positive whole number")
    allow_save = data.get("allow_save", False)
    if not isinstance(allow_save, bool):
        raise DashboardError(f"{path}: allow_save must be true or false")
    face_model = data.get("face_model")
    if face_model is not None and not (isinstance(face_model, str) and face_model.strip()
                                       and "\x00" not in face_model):
        raise DashboardError(f"{path}: face_model must be the path of face_landmarker.task")
    return {"dirs": dirs, "max_entries": limit, "max_video_side": side, "allow_save": allow_save,
            "face_model": face_model}


CONFIG_KEYS = ("dirs", "max_entries", "max_video_side", "allow_save", "face_model")
FILE_DEFAULTS = {"dirs": None, "max_entries": DEFAULT_MAX_ENTRIES, "max_video_side": DEFAULT_MAX_VIDEO_SIDE,
                 "allow_save": False, "face_model": None}


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _whole(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DashboardError(f"{flag} {_printable(text)}: not a positive whole number")
    return value


def _parse_argv(argv: list[str]) -> argparse.Namespace:
    # Numbers are read as text and checked here: argparse's own error would print a usage
    # block and exit inside a page run (a blank page), not one line.
    parser = argparse.ArgumentParser(prog="streamlit run streamlit_app.py --", add_help=False)
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--max-entries", default=None)
    parser.add_argument("--max-video-side", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--allow-save", action="store_true", default=None)
    parser.add_argument("--face-model", default=None)
    args, _unknown = parser.parse_known_args(argv)
    args.max_entries = _whole("--max-entries", args.max_entries)
    args.max_video_side = _whole("--max-video-side", args.max_video_side)
    if any("\x00" in d for d in args.dirs):
        raise DashboardError("a directory with a NUL byte on the command line; refused")
    return args


def owner_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> OwnerSettings:
    """The launch-time directories: command line, then $AFFECTCAM_DASHBOARD_DIRS, then the config file."""
    env = os.environ if environ is None else environ
    if argv is None:
        # `streamlit run streamlit_app.py -- DIR…` hands the script ["streamlit_app.py", DIR…];
        # under any other runner (pytest's AppTest) sys.argv is not ours to read.
        argv = sys.argv[1:] if Path(sys.argv[0]).name == "streamlit_app.py" else []
    args = _parse_argv(argv)
    config_path = args.config or env.get(ENV_CONFIG) or (CONFIG_FILE if Path(CONFIG_FILE).is_file() else None)
    file_cfg = _read_config_file(Path(config_path)) if config_path else dict(FILE_DEFAULTS)
    limit = args.max_entries or file_cfg["max_entries"]
    extra = {"allow_save": bool(args.allow_save or file_cfg["allow_save"]),
             "face_model": args.face_model or file_cfg["face_model"] or env.get(ENV_FACE_MODEL) or None,
             "max_video_side": args.max_video_side or file_cfg["max_video_side"]}
    if args.dirs:
        return OwnerSettings(tuple(args.dirs), limit, "command line", **extra)
    if env.get(ENV_DIRS, "").strip():
        return OwnerSettings(tuple(_split_env(env[ENV_DIRS])), limit, f"${ENV_DIRS}", **extra)
    if file_cfg["dirs"]:
        return OwnerSettings(tuple(file_cfg["dirs"]), limit, str(config_path), **extra)
    return OwnerSettings(DEFAULT_DIRS, limit, **extra)


def parse_dirs(text: str) -> list[str]:
    """One directory per line (the sidebar's text box); blank lines ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def inside(path: Path, roots: tuple[Path, ...] | list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def narrow(requested: list[str], owner: OwnerSettings) -> tuple[list[str], list[str]]:
    """The requested directories that lie inside the owner's, and those refused."""
    kept, refused = [], []
    for d in requested:
        try:
            ok = inside(resolve(d), owner.roots)
        except PathNotAllowed:  # a NUL byte: no such directory can exist
            ok = False
        (kept if ok else refused).append(d if ok else _printable(d))
    return kept, refused


@dataclass
class DashboardConfig:
    dirs: list[str] = field(default_factory=default_dirs)
    max_entries: int = DEFAULT_MAX_ENTRIES
    settings: OwnerSettings | None = None  # the owner's launch options (saving, face model, limits)

    @property
    def roots(self) -> list[Path]:
        return [resolve(d) for d in self.dirs]

    def existing_roots(self) -> list[Path]:
        return [r for r in self.roots if r.is_dir()]

    def check(self, path: str | Path, extra_roots: tuple[Path, ...] = ()) -> Path:
        """The resolved path if it lies under a configured directory (or one of
        `extra_roots`, e.g. the packaged models); else PathNotAllowed. The
        message quotes the path given, never anything read from the file."""
        resolved = resolve(path)
        if inside(resolved, [*self.roots, *extra_roots]):
            return resolved
        raise PathNotAllowed(f"{_printable(path)}: outside the scanned directories; refused")

    def allowed(self, path: str | Path, extra_roots: tuple[Path, ...] = ()) -> bool:
        """check() as a yes/no, for readers that skip a refused side file (affect.compare)."""
        try:
            self.check(path, extra_roots)
            return True
        except PathNotAllowed:
            return False
