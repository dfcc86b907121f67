"""Helpers for the reliability suite: bad input tried through the commands a
user types (`python -m train …`, `python -m realtime.cam …`), each case
asserting the one-line message and that nothing already written was lost.
A plain module, not a conftest.py: several test folders have one, and only
one of them can be imported by the name `conftest`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AFFECTCAM_SHARED", REPO.parent / "shared"))

# The smallest fit that still runs every part of the loop (tests/train/test_fit.py's tiny config).
TINY_FIT = ["--set", "model.pretrained=none", "--set", "model.blendshapes=false", "--input-size", "64",
            "--workers", "0", "--batch-size", "8", "--threads", "1", "--set", "train.warmup_epochs=0",
            "--set", "train.eval_tta=false", "--set", "train.samples_per_epoch=null",
            "--set", "data.augment={hflip: 0.0, rotation: 0.0, scale: 0.0, shift: 0.0, brightness: 0.0, "
                     "contrast: 0.0, erasing: 0.0, greyscale: 0.0}"]


def tiny_affectnet(root: Path, n: int = 24) -> tuple[Path, list[str]]:
    """The first `n` shared AffectNet faces in the AffectNet layout."""
    src = SHARED / "data" / "affectnet"
    if not src.is_dir():
        pytest.skip(f"{src} not found: these tests need the project's ../shared data")
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    stems = sorted((p.stem for p in (src / "images").glob("*.jpg")), key=lambda s: (len(s), s))[:n]
    for stem in stems:
        shutil.copy(src / "images" / f"{stem}.jpg", root / "images")
        for kind in ("exp", "val", "aro", "lnd"):
            ann = src / "annotations" / f"{stem}_{kind}.npy"
            if ann.exists():
                shutil.copy(ann, root / "annotations")
    return root, stems


def run_module(module: str, args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=kw.pop("cwd", REPO), env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def error_line(stderr: str) -> str:
    """The command's own error line (library log lines, e.g. MediaPipe's, ride along on stderr)."""
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert lines, f"no error line in: {stderr[-800:]}"
    assert "Traceback" not in stderr, stderr[-1500:]
    return lines[-1]


@contextlib.contextmanager
def small_disk(where: Path, size_kb: int):
    """A real full disk: a tmpfs of `size_kb` KiB mounted at `where` (root, or a user
    namespace that lets us mount), unmounted afterwards. Skips where neither is allowed."""
    where.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root here (the disk-full cases run as root in CI)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave_kb: int = 0) -> None:
    """Fill the disk `folder` is on, leaving about `leave_kb` KiB free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize - leave_kb * 1024
    if free > 0:
        (folder / "filler.bin").write_bytes(b"\0" * free)
