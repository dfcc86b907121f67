"""How much reading small faces every Nth frame changes what the camera reports: the smoothed
top-1 expression and valence/arousal of every (frame, track) against reading every face every
frame (`--small-face-every 1`), on one video, sequential stages (the results do not depend on them).

    python bench/read_schedule.py [--video ../shared/videos/short_hamilton_clip.mp4] [--side 112] [--every 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from realtime.options import ScheduleOptions  # noqa: E402
from realtime.pipeline import Pipeline, PipelineOptions  # noqa: E402

CLIP = REPO.parent / "shared" / "videos" / "short_hamilton_clip.mp4"


def readings(video: str, every: int, side: int | None) -> dict:
    opts = PipelineOptions(source=video, schedule=ScheduleOptions(small_face_every=every, small_face_side=side,
                                                                  overlap=False))
    with Pipeline(opts) as p:
        size = side or p.spec.input_size
        return {(r.index, f.track_id): (f.probabilities.copy(), f.valence, f.arousal, f.inferred,
                                        f.crop_box.side < size) for r in p for f in r.faces}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(CLIP))
    ap.add_argument("--side", type=int, default=None, help="--small-face-side (default: the model's input size)")
    ap.add_argument("--every", type=int, default=2, help="--small-face-every to compare with 1")
    args = ap.parse_args(argv)
    base, other = readings(args.video, 1, args.side), readings(args.video, args.every, args.side)
    keys = [k for k in base if k in other]
    print(f"{Path(args.video).name}, small faces = crop under {args.side or 'the input size'} px, "
          f"every {args.every} against every frame ({platform.processor() or platform.machine()}):")
    for name, ks in (("small faces", [k for k in keys if base[k][4]]), ("all faces", keys)):
        if not ks:
            continue
        top = np.mean([np.argmax(base[k][0]) == np.argmax(other[k][0]) for k in ks])
        dv = np.mean([abs(base[k][1] - other[k][1]) for k in ks])
        da = np.mean([abs(base[k][2] - other[k][2]) for k in ks])
        read = np.mean([other[k][3] for k in ks])
        print(f"  {name}: {len(ks)} face-frames, top-1 agreement {top:.3f}, |dV| {dv:.4f}, |dA| {da:.4f}, "
              f"read in {read:.0%} of them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
