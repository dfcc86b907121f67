"""The shared clip made harder, as wide shots, dim rooms and cheap webcams make it.

- `mosaic`: a 2×2 mosaic (1280×720) of the 640×360 clip: top-left frame i,
  top-right frame i+60 mirrored, bottom-left i+120, bottom-right i+180
  mirrored (modulo the clip's length), so every face keeps its pixel size and
  a frame holds four copies of the clip's faces;
- `dark`: every frame at 35 % brightness;
- `noisy`: Gaussian noise of σ 18 grey levels added (seeded).

The dark and noisy clips are written losslessly (FFV1 in .avi), so the
darkening and the noise reach the face finder as made, not smoothed by a
codec. The mosaic is written as H.264 at CRF 17 (.mp4, near-lossless; its
tiles come from the lossy clip anyway), as a 1280×720 camera or recording
delivers it: decoding a 1280×720 FFV1 frame took 20 ms of CPU here (2 ms for
the clip's MP4), a cost of the file format that no camera has, and that
counted for a third of the camera's work a frame. `bench/peers.py
--clip-variants` runs the camera and `fer` on them (the same files for both).

    python bench/clip_variants.py OUT_DIR [--clip ../shared/videos/short_hamilton_clip.mp4]
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO.parent / "shared" / "videos" / "short_hamilton_clip.mp4"
VARIANTS = ("mosaic", "dark", "noisy")
MOSAIC_OFFSETS = ((0, False), (60, True), (120, False), (180, True))  # (frame offset, mirrored)
DARK, NOISE_SIGMA = 0.35, 18.0


def read_frames(clip: str | Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        raise SystemExit(f"{clip}: no frames read")
    return frames, fps


def mosaic(frames: list[np.ndarray], i: int) -> np.ndarray:
    n = len(frames)
    tiles = [cv2.flip(frames[(i + k) % n], 1) if mirror else frames[(i + k) % n] for k, mirror in MOSAIC_OFFSETS]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def make(frames: list[np.ndarray], variant: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i, img in enumerate(frames):
        if variant == "mosaic":
            yield mosaic(frames, i)
        elif variant == "dark":
            yield np.clip(img.astype(np.float32) * DARK + 0.5, 0, 255).astype(np.uint8)
        elif variant == "noisy":
            yield np.clip(img + rng.normal(0, NOISE_SIGMA, img.shape), 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")


def write_h264(path: Path, images, fps: float, crf: int = 17) -> Path:
    """BGR frames into an H.264 MP4 (PyAV's libx264) at `crf`."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options={"crf": str(crf), "preset": "medium"})
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(images):
            if i == 0:
                stream.height, stream.width = img.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_variants(out_dir: str | Path, clip: str | Path = CLIP, variants=VARIANTS) -> dict[str, Path]:
    """{variant: path} of the written videos."""
    frames, fps = read_frames(clip)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for v in variants:
        if v == "mosaic":
            paths[v] = write_h264(out / f"{Path(clip).stem}_{v}.mp4", make(frames, v), fps)
            continue
        path = out / f"{Path(clip).stem}_{v}.avi"
        first = next(make(frames[:1], v))
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise SystemExit(f"{path}: OpenCV cannot write FFV1 video here")
        for img in make(frames, v):
            writer.write(img)
        writer.release()
        paths[v] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args(argv)
    for v, path in write_variants(args.out_dir, args.clip, args.variants).items():
        print(f"wrote {path} ({v})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
