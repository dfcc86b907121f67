"""Files every room writes and reads the same way: the cache root, the check
that an output can be written, and atomic writes.

An atomic write goes to a temporary file next to the target (a unique name,
`.<stem>.<random>.partial<suffix>`: the suffix stays last because cv2 and
numpy pick the container from it) and is moved into place with `os.replace`
only when the write finished, so a reader never sees half a file and a
killed run never leaves one where the real file goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

try:
    import fcntl  # POSIX: the lock that tells a living writer's temporary file from a killed one's
except ImportError:  # Windows: no recovery of killed runs' files
    fcntl = None

CACHE_ENV = "AFFECTCAM_CACHE"
PARTIAL = ".partial"  # in every temporary file's name (tests and cleanups look for it)


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex (read in 1 MiB blocks): what a download is checked against, and what
    a cache of a model's outputs is keyed by."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root(kind: str | None = None) -> Path:
    """`$AFFECTCAM_CACHE`, else `$XDG_CACHE_HOME/affectcam`, else `~/.cache/affectcam`;
    with `kind`, that sub-folder (blendshapes, teacher, detector, …)."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "affectcam"
    return root / kind if kind else root


class NotWritable(ValueError):
    """`path` cannot be written. `kind`: "folder" (the path is a folder), "mkdir" (its folder
    cannot be created) or "write" (no file can be made in its folder); `reason`: the system's words."""

    def __init__(self, path: Path, kind: str, reason: str = ""):
        self.path, self.kind, self.reason = path, kind, reason
        problem = {"folder": "is a folder", "mkdir": f"cannot create the folder {path.parent} ({reason})",
                   "write": f"cannot write in {path.parent} ({reason})"}[kind]
        super().__init__(f"{path}: {problem}")


def _strerror(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def check_writable(path: str | os.PathLike) -> Path:
    """Before long work: `path` is not a folder, its folder exists (created if need be), and a
    file can be made there (tried, not guessed from permission bits: ACLs, read-only mounts and
    root all fool `os.access`). Returns the path, `~` expanded; raises NotWritable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise NotWritable(path, "folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NotWritable(path, "mkdir", _strerror(exc)) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise NotWritable(path, "write", _strerror(exc)) from None
    return path


class PendingFile:
    """A temporary file next to `path` that replaces `path` on `commit()`
    (for writers that stay open, like the camera's recordings); `discard()`
    removes it instead.

    With `hold=True` the writer keeps a lock on the temporary file while it lives: a
    temporary file nobody holds is what a killed writer left (`orphaned_partials`)."""

    def __init__(self, path: str | os.PathLike, hold: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f"{PARTIAL}{self.path.suffix}",
                                   dir=self.path.parent)
        self.tmp = Path(tmp)
        self._lock_fd: int | None = None
        if hold and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_fd = fd
        else:
            os.close(fd)

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = None

    def commit(self) -> Path:
        os.chmod(self.tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(self.tmp, self.path)
        self._release()
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._release()


def orphaned_partials(path: str | os.PathLike) -> list[Path]:
    """The temporary files of `path` (`.<stem>.<8 random>.partial<suffix>` beside it) that no living
    writer holds (`PendingFile(hold=True)`): what a killed run left, oldest first."""
    path = Path(path).expanduser()
    if fcntl is None or not path.parent.is_dir():
        return []
    found = []
    # mkstemp's random part is 8 characters: `out.x.csv`'s files are not `out.csv`'s
    for tmp in path.parent.glob(f".{glob_escape(path.stem)}.{'?' * 8}{PARTIAL}{glob_escape(path.suffix)}"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a living writer holds it
        finally:
            os.close(fd)
        found.append(tmp)
    return sorted(found, key=lambda p: p.stat().st_mtime)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds."""
    pending = PendingFile(path)
    try:
        yield pending.tmp
        pending.commit()
    finally:
        pending.discard()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)
