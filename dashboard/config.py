"""Which directories the dashboard may read, and the check that keeps it there.

The dashboard lists and opens files only under the configured directories, so
a shared demo machine does not become a file browser for the whole disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_DIRS = "AFFECTCAM_DASHBOARD_DIRS"  # os.pathsep-separated, e.g. "runs:recordings:/data/videos"
DEFAULT_DIRS = ("runs", "recordings")


class DashboardError(ValueError):
    """Input the dashboard cannot show; the message is one line naming the file."""


class PathNotAllowed(DashboardError):
    """A path outside the configured directories."""


def default_dirs(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    raw = env.get(ENV_DIRS, "").strip()
    if not raw:
        return list(DEFAULT_DIRS)
    return [part.strip() for part in raw.split(os.pathsep) if part.strip()]


def parse_dirs(text: str) -> list[str]:
    """One directory per line (the sidebar's text box); blank lines ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class DashboardConfig:
    dirs: list[str] = field(default_factory=default_dirs)

    @property
    def roots(self) -> list[Path]:
        # Resolved once here so symlinks and ".." cannot step outside later.
        return [Path(d).expanduser().resolve() for d in self.dirs]

    def existing_roots(self) -> list[Path]:
        return [r for r in self.roots if r.is_dir()]

    def check(self, path: str | Path) -> Path:
        """The resolved path if it lies under a configured directory; else PathNotAllowed."""
        resolved = Path(path).expanduser().resolve()
        for root in self.roots:
            if resolved == root or resolved.is_relative_to(root):
                return resolved
        raise PathNotAllowed(
            f"{path}: outside the configured directories ({', '.join(self.dirs) or 'none'}); "
            "add its directory in the sidebar to open it"
        )
