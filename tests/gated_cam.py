"""Run `python -m realtime.cam` with its source held at a gate the test controls.

    python tests/gated_cam.py GATE_DIR N -- <realtime.cam arguments>
    GATE_AT_CLOSE=1 python tests/gated_cam.py GATE_DIR N -- ...

The real camera command runs unchanged, except that its source, after yielding
N frames, touches GATE_DIR/reached and waits for GATE_DIR/release before it
goes on. A test can then send a signal while the run is certainly mid-way,
whatever the speed of the CPU (a sleep-then-signal test raced the clock and
failed on fast machines, issue 24 item 16).

With GATE_AT_CLOSE=1 the run also stops once more while it shuts down: just before the
video sink closes it touches GATE_DIR/closing and waits for GATE_DIR/close_release, so
a second signal can be sent while the shutdown is under way (issue 24 item 11)."""

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


def gated_close(close, gate: Path):
    def held(self):
        (gate / "closing").touch()
        deadline = time.monotonic() + 120
        while not (gate / "close_release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return close(self)
    return held


if __name__ == "__main__":
    import os

    import realtime.sinks as sinks_module

    gate_dir, after, sep, *cam_args = sys.argv[1:]
    assert sep == "--", "usage: gated_cam.py GATE_DIR N -- <realtime.cam arguments>"
    pipeline_module.open_source = gated(pipeline_module.open_source, Path(gate_dir), int(after))
    if os.environ.get("GATE_AT_CLOSE") == "1":
        sinks_module.VideoSink.close = gated_close(sinks_module.VideoSink.close, Path(gate_dir))
    raise SystemExit(main(cam_args))
