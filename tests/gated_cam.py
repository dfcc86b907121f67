"""Run `python -m realtime.cam` with its source held at a gate the test controls.

    python tests/gated_cam.py GATE_DIR N -- <realtime.cam arguments>

The real camera command runs unchanged, except that its source, after yielding
N frames, touches GATE_DIR/reached and waits for GATE_DIR/release before it
goes on. A test can then send a signal while the run is certainly mid-way,
whatever the speed of the CPU (a sleep-then-signal test raced the clock and
failed on fast machines, issue 24 item 16)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import realtime.pipeline as pipeline_module
from realtime.cam import main


def gated(open_source, gate: Path, after: int):
    def open_gated(*args, **kwargs):
        source = open_source(*args, **kwargs)
        frames = source.__iter__

        def held_iter():
            for n, frame in enumerate(frames(), 1):
                yield frame
                if n == after:
                    (gate / "reached").touch()
                    deadline = time.monotonic() + 120
                    while not (gate / "release").exists() and time.monotonic() < deadline:
                        time.sleep(0.01)

        # iter() looks the method up on the type, so the source gets a gated subclass
        source.__class__ = type(f"Gated{type(source).__name__}", (type(source),),
                                {"__iter__": lambda self: held_iter()})
        return source
    return open_gated


if __name__ == "__main__":
    gate_dir, after, sep, *cam_args = sys.argv[1:]
    assert sep == "--", "usage: gated_cam.py GATE_DIR N -- <realtime.cam arguments>"
    pipeline_module.open_source = gated(pipeline_module.open_source, Path(gate_dir), int(after))
    raise SystemExit(main(cam_args))
