"""Soak: the realtime loop over a looped video file for a long time, resident
memory sampled every 10 s. Reports RSS at start, after warm-up, at the end,
the growth after warm-up, and whether any frame was lost (a file source never
drops: every frame read must come out of the pipeline).

    python bench/soak.py --minutes 30 [--video ../shared/videos/short_hamilton_clip.mp4]
        [--model realtime/models/affectcam_default.int8.onnx] [--warmup-minutes 2]
        [--csv /tmp/soak.csv] [--json soak.json]

Target (issue 17): at most 5 % RSS growth after warm-up, no frame lost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from realtime.pipeline import FaceFindingOptions, OutputOptions, Pipeline, PipelineOptions  # noqa: E402
from realtime.sources import FileSource, Frame, SourceOptions  # noqa: E402

SAMPLE_S = 10.0


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


class LoopedFile(FileSource):
    """A video file read again from the start at its end, with frame numbers and
    media time running on, so tracks and smoothing see one long video."""

    kind = "file"

    def __init__(self, path: Path, deadline: float):
        super().__init__(path, SourceOptions())
        self.path, self.deadline, self.loops = path, deadline, 0

    def __iter__(self) -> Iterator[Frame]:
        offset = 0
        while time.monotonic() < self.deadline:
            n = 0
            for frame in super().__iter__():
                yield Frame(offset + frame.index, (offset + frame.index) * 1000.0 / self.fps, frame.image)
                n = frame.index + 1
                if time.monotonic() >= self.deadline:
                    return
            offset += n
            self.loops += 1
            self.cap.release()
            self.cap = __import__("cv2").VideoCapture(str(self.path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=None, help="default: 2, or a tenth of a short run")
    ap.add_argument("--video", default=str(REPO.parent / "shared" / "videos" / "short_hamilton_clip.mp4"))
    ap.add_argument("--model", default=None, help="default: the packaged model")
    ap.add_argument("--face-model", default=os.environ.get("AFFECTCAM_FACE_MODEL",
                                                         str(REPO.parent / "shared" / "models" / "face_landmarker.task")))
    ap.add_argument("--csv", default=None, help="default: a temporary file (the CSV sink runs, as in the camera)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else min(2.0, args.minutes / 10))
    duration_s = 60 * args.minutes

    csv_path = args.csv or os.path.join(tempfile.mkdtemp(prefix="affectcam-soak-"), "soak.csv")
    started = time.monotonic()
    source = LoopedFile(Path(args.video), started + duration_s)
    options = PipelineOptions(source=source, model=args.model,
                              faces=FaceFindingOptions(face_model=args.face_model, download_face_model=False),
                              outputs=OutputOptions(csv=csv_path))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - started, rss_mb()))
            stop.wait(SAMPLE_S)

    frames_out = 0
    with Pipeline(options) as pipeline:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for _ in pipeline:
            frames_out += 1
        stop.set()
        sampler.join()
    samples.append((time.monotonic() - started, rss_mb()))
    after = [mb for t, mb in samples if t >= warmup_s]
    warm = after[0] if after else samples[-1][1]
    result = {
        "minutes": round((time.monotonic() - started) / 60, 2), "warmup_minutes": round(warmup_s / 60, 2),
        "frames_read": source.stats.frames, "frames_out": frames_out, "frames_lost": source.stats.frames - frames_out,
        "corrupt_frames": source.stats.corrupt, "loops": source.loops,
        "rss_start_mb": round(samples[0][1], 1), "rss_after_warmup_mb": round(warm, 1),
        "rss_end_mb": round(samples[-1][1], 1), "rss_max_mb": round(max(mb for _, mb in samples), 1),
        "growth_after_warmup_pct": round(100 * (samples[-1][1] - warm) / warm, 2),
        "samples": [[round(t, 1), round(mb, 1)] for t, mb in samples],
        "cpu": platform.processor() or platform.machine(), "loadavg": os.getloadavg(),
    }
    print(f"soak {result['minutes']} min ({result['loops']} loops, {frames_out} frames, "
          f"{result['frames_lost']} lost): RSS {result['rss_start_mb']} MB at start, "
          f"{result['rss_after_warmup_mb']} MB after {result['warmup_minutes']} min warm-up, "
          f"{result['rss_end_mb']} MB at the end: {result['growth_after_warmup_pct']:+.2f} % after warm-up "
          f"(target ≤ 5 %)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["frames_lost"] == 0 and result["growth_after_warmup_pct"] <= 5.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
