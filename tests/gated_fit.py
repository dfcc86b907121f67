"""Run `python -m train` with the fit held at a gate the test controls.

    python tests/gated_fit.py GATE_DIR N -- <python -m train arguments>

The real training command runs unchanged, except that once epoch N is saved
(checkpoints and history.csv written), it touches GATE_DIR/reached and waits for
GATE_DIR/release. A test can then kill it at a known point, whatever the speed
of the CPU: polling for last.pt and killing raced the clock (a fast CPU finished
every epoch before the kill, a slow one outran a wall-clock deadline; issue 24
item 16, as tests/gated_cam.py does for the camera)."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def gated(save_epoch, gate: Path, after: int):
    def held(run_dir, writer, progress, row, *args, **kwargs):
        save_epoch(run_dir, writer, progress, row, *args, **kwargs)
        if int(row["epoch"]) == after:
            (gate / "reached").touch()
            deadline = time.monotonic() + 600  # only against a test that never releases it
            while not (gate / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
    return held


def wait_for_gate(gate: Path, proc) -> None:
    """Block until the run is at the gate; fail if it ended first (no clock involved)."""
    while not (gate / "reached").exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before reaching the gate")
        time.sleep(0.05)


if __name__ == "__main__":
    import train.fit as fit_module  # here, not at the top: tests import wait_for_gate without torch
    from train.__main__ import main

    gate_dir, after, sep, *train_args = sys.argv[1:]
    assert sep == "--", "usage: gated_fit.py GATE_DIR N -- <python -m train arguments>"
    fit_module._save_epoch = gated(fit_module._save_epoch, Path(gate_dir), int(after))
    raise SystemExit(main(train_args))
