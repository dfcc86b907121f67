"""Which directories the dashboard may read, and the check that keeps it there.

The directories are the owner's choice, fixed when the server starts:

    streamlit run streamlit_app.py -- runs recordings /data/videos   # command line (after `--`)
    AFFECTCAM_DASHBOARD_DIRS=runs:recordings streamlit run streamlit_app.py
    dashboard.toml (or $AFFECTCAM_DASHBOARD_CONFIG): dirs = ["runs", "recordings"], max_entries = 20000

(first found wins, in that order; default runs/ and recordings/). A visitor
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
ENV_CONFIG = "AFFECTCAM_DASHBOARD_CONFIG"  # a TOML file; default ./dashboard.toml when it exists
CONFIG_FILE = "dashboard.toml"
DEFAULT_DIRS = ("runs", "recordings")
# Directory entries looked at per scan: a scanned `/` must not tie the server up for minutes.
DEFAULT_MAX_ENTRIES = 20_000


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

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(resolve(d) for d in self.dirs)


def resolve(path: str | Path) -> Path:
    # Resolved once here so symlinks and ".." cannot step outside later.
    return Path(path).expanduser().resolve()


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
    dirs, limit = data.get("dirs"), data.get("max_entries", DEFAULT_MAX_ENTRIES)
    if dirs is not None and not (isinstance(dirs, list) and all(isinstance(d, str) for d in dirs)):
        raise DashboardError(f"{path}: dirs must be a list of directory names")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DashboardError(f"{path}: max_entries must be a positive whole number")
    return {"dirs": dirs, "max_entries": limit}


def _parse_argv(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlit run streamlit_app.py --", add_help=False)
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--max-entries", type=int, default=None)
    parser.add_argument("--config", default=None)
    args, _unknown = parser.parse_known_args(argv)
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
    file_cfg = _read_config_file(Path(config_path)) if config_path else {"dirs": None,
                                                                         "max_entries": DEFAULT_MAX_ENTRIES}
    limit = args.max_entries if args.max_entries and args.max_entries > 0 else file_cfg["max_entries"]
    if args.dirs:
        return OwnerSettings(tuple(args.dirs), limit, "command line")
    if env.get(ENV_DIRS, "").strip():
        return OwnerSettings(tuple(_split_env(env[ENV_DIRS])), limit, f"${ENV_DIRS}")
    if file_cfg["dirs"]:
        return OwnerSettings(tuple(file_cfg["dirs"]), limit, str(config_path))
    return OwnerSettings(DEFAULT_DIRS, limit)


def parse_dirs(text: str) -> list[str]:
    """One directory per line (the sidebar's text box); blank lines ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def inside(path: Path, roots: tuple[Path, ...] | list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def narrow(requested: list[str], owner: OwnerSettings) -> tuple[list[str], list[str]]:
    """The requested directories that lie inside the owner's, and those refused."""
    kept, refused = [], []
    for d in requested:
        (kept if inside(resolve(d), owner.roots) else refused).append(d)
    return kept, refused


@dataclass
class DashboardConfig:
    dirs: list[str] = field(default_factory=default_dirs)
    max_entries: int = DEFAULT_MAX_ENTRIES

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
        raise PathNotAllowed(f"{path}: outside the scanned directories; refused")
