"""Faces at every size, with ground truth: real held-out faces pasted at known
boxes into 1280×720 and 1920×1080 frames, 1–20 faces a frame.

The faces are the held-out 20 % of the AffectNet part (`bench/known_faces.py`'s
`held_out_faces`: never trained on, nor used to fit the crop rule or choose a
threshold; `--part train` draws from the rest instead, for choosing). Each
scene holds N faces (N cycles through `--counts`) for `--scene-frames` frames;
every face has its own size (a size bin drawn in turn, then a size inside it:
24–39, 40–63, 64–99, 100–200 px, the side of the pasted AffectNet image, i.e.
the model's framing; a face box is about 0.8–0.85 of it), its own slow drift
(up to 1.5 px a frame), and no two faces overlap. The background is a smooth
random colour field with grain. Frames are made on the fly (no codec), so the
figures are the face finders', not a codec's.

Two tables:

- `finders`: each face finder on every frame, in turn on the same frame
  (so a drifting load hits them alike): recall by face size, precision (a
  detection whose centre lies in no face, or whose size is off by more than
  ×0.35–1.6, is a false face), ms per frame (median, p95).
- `pipeline`: the camera pipeline (`realtime.Pipeline`, stages overlapped,
  drawing on, no recordings) with `--faces` as given: recall and precision of
  its tracked faces, expression accuracy of the found faces against their
  labels by face size beside the model on the original images (the training
  framing), ID switches (a face's track ID changing between two frames where
  it is found), FPS, and work / latency per frame by number of faces.

    python bench/crowds.py [--sizes 1280x720 1920x1080] [--tables finders pipeline] \\
        [--repeats 2] [--json crowds.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from affect.preprocess import resize_square, to_rgb  # noqa: E402
from realtime.faces import FaceFinder, FaceOptions  # noqa: E402
from realtime.sources import Frame, Source, SourceOptions  # noqa: E402
from realtime.yunet import YuNetOptions, _nms  # noqa: E402

FACE_MODEL = REPO.parent / "shared" / "models" / "face_landmarker.task"
SIZE_BINS = ((24, 39), (40, 63), (64, 99), (100, 200))
COUNTS = (1, 2, 5, 10, 15, 20)
FPS = 30.0


def size_bin(side: float) -> str:
    for lo, hi in SIZE_BINS:
        if lo <= side <= hi:
            return f"{lo}-{hi}"
    return "other"


def face_pool(part: str, seed: int = 0) -> tuple[list, list[str]]:
    """(samples, labels): AffectNet's held-out part (`test`) or the rest (`train`), shuffled."""
    from affect.datasets.loaders import load_affectnet
    from bench.known_faces import held_out_faces

    held, labels = held_out_faces(seed=seed)
    if part == "test":
        return held, labels
    names = {Path(s.path).name for s in held}
    rest = [s for s in load_affectnet(REPO.parent / "shared" / "data" / "affectnet").samples
            if Path(s.path).name not in names and s.expression >= 0]
    order = np.random.default_rng(seed).permutation(len(rest))
    return [rest[i] for i in order], labels


@dataclass
class Placed:
    gid: int  # a face's id over the whole video
    sample: int  # index into the pool
    label: int
    x: float
    y: float
    vx: float
    vy: float
    side: int


@dataclass
class Scene:
    first: int  # frame index of its first frame
    frames: int
    faces: list[Placed]
    seed: int


def plan(pool_size: int, labels_of: list[int], width: int, height: int, counts: tuple[int, ...],
         repeats: int, scene_frames: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    scenes, gid, next_sample, first, k = [], 0, 0, 0, 0
    for _ in range(repeats):
        for n in counts:
            placed: list[Placed] = []
            for _ in range(n):
                lo, hi = SIZE_BINS[k % len(SIZE_BINS)]
                k += 1
                side = int(rng.integers(lo, hi + 1))
                for _attempt in range(400):
                    if _attempt and _attempt % 100 == 0:  # crowded: try a smaller face
                        side = max(SIZE_BINS[0][0], int(side * 0.8))
                    vx, vy = rng.uniform(-1.5, 1.5, 2)
                    drift_x, drift_y = abs(vx) * scene_frames, abs(vy) * scene_frames
                    x_lo, x_hi = drift_x if vx < 0 else 0, width - side - (drift_x if vx > 0 else 0)
                    y_lo, y_hi = drift_y if vy < 0 else 0, height - side - (drift_y if vy > 0 else 0)
                    if x_hi <= x_lo or y_hi <= y_lo:
                        continue
                    x, y = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
                    # no overlap at any time of the scene: compare the swept boxes, with a gap
                    sweep = (min(x, x + vx * scene_frames), min(y, y + vy * scene_frames),
                             side + drift_x, side + drift_y)
                    if all(not _overlap(sweep, _sweep(p, scene_frames), 6) for p in placed):
                        placed.append(Placed(gid, next_sample % pool_size, labels_of[next_sample % pool_size],
                                             x, y, vx, vy, side))
                        gid += 1
                        next_sample += 1
                        break
            scenes.append(Scene(first, scene_frames, placed, int(rng.integers(1 << 30))))
            first += scene_frames
    return scenes


def _sweep(p: Placed, frames: int) -> tuple[float, float, float, float]:
    return (min(p.x, p.x + p.vx * frames), min(p.y, p.y + p.vy * frames),
            p.side + abs(p.vx) * frames, p.side + abs(p.vy) * frames)


def _overlap(a, b, gap: float) -> bool:
    return not (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0]
                or a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    small = rng.integers(30, 226, (4, 6, 3)).astype(np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


class SceneVideo:
    """The frames of a plan, made on demand; `truth(i)` gives frame i's pasted boxes."""

    def __init__(self, scenes: list[Scene], pool: list, width: int, height: int):
        self.scenes, self.pool, self.width, self.height = scenes, pool, width, height
        self.n_frames = sum(s.frames for s in scenes)
        self._bg: dict[int, np.ndarray] = {}
        self._faces: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _scene(self, i: int) -> tuple[Scene, int]:
        for s in self.scenes:
            if s.first <= i < s.first + s.frames:
                return s, i - s.first
        raise IndexError(i)

    def truth(self, i: int) -> list[tuple[Placed, tuple[int, int, int, int]]]:
        scene, t = self._scene(i)
        return [(p, (int(round(p.x + p.vx * t)), int(round(p.y + p.vy * t)), p.side, p.side)) for p in scene.faces]

    def _face(self, p: Placed) -> tuple[np.ndarray, np.ndarray]:
        key = (p.sample, p.side)
        if key not in self._faces:
            img = cv2.imread(self.pool[p.sample].path, cv2.IMREAD_COLOR)
            face = cv2.resize(img, (p.side, p.side), interpolation=cv2.INTER_AREA).astype(np.float32)
            edge = max(2, p.side // 16)  # a soft edge, as bench/known_faces.py pastes
            ramp = np.minimum(np.arange(p.side), np.arange(p.side)[::-1]).astype(np.float32)
            a = np.clip(ramp / edge, 0, 1)
            self._faces[key] = (face, np.minimum(a[:, None], a[None, :])[:, :, None])
        return self._faces[key]

    def frame(self, i: int) -> np.ndarray:
        scene, _ = self._scene(i)
        if scene.first not in self._bg:
            self._bg = {scene.first: _background(np.random.default_rng(scene.seed), self.width, self.height)}
            self._faces = {k: v for k, v in self._faces.items() if k[0] in {p.sample for p in scene.faces}}
        canvas = self._bg[scene.first].copy()
        for p, (x, y, w, h) in self.truth(i):
            face, alpha = self._face(p)
            region = canvas[y:y + h, x:x + w].astype(np.float32)
            canvas[y:y + h, x:x + w] = (alpha * face + (1 - alpha) * region).astype(np.uint8)
        return canvas


class SceneSource(Source):
    """The video as a camera-pipeline source (a file's semantics: nothing dropped)."""

    kind = "file"

    def __init__(self, video: SceneVideo):
        super().__init__(f"crowds {video.width}x{video.height}", SourceOptions())
        self.video, self.fps = video, FPS

    def __iter__(self):
        for i in range(self.video.n_frames):
            self.stats.frames += 1
            yield Frame(i, i * 1000.0 / FPS, self.video.frame(i))


def match(truth: list, boxes: list[tuple[float, float, float, float]], scores: list[float]) -> dict[int, int]:
    """{detection index: face gid}: a detection's centre inside the pasted face, its size
    within 0.35–1.6 × the face's, best score first, each face at most once."""
    taken: set[int] = set()
    out: dict[int, int] = {}
    for d in np.argsort(-np.asarray(scores, float)) if len(scores) else []:
        x, y, w, h = boxes[d]
        cx, cy, size = x + w / 2, y + h / 2, max(w, h)
        best, best_dist = None, None
        for p, (gx, gy, gw, gh) in truth:
            if p.gid in taken or not (gx <= cx <= gx + gw and gy <= cy <= gy + gh):
                continue
            if not 0.35 * gw <= size <= 1.6 * gw:
                continue
            dist = (cx - gx - gw / 2) ** 2 + (cy - gy - gh / 2) ** 2
            if best is None or dist < best_dist:
                best, best_dist = p.gid, dist
        if best is not None:
            taken.add(best)
            out[int(d)] = best
    return out


class Counts:
    """Recall by face size and precision, over face-frames."""

    def __init__(self) -> None:
        self.hit: dict[str, int] = defaultdict(int)
        self.total: dict[str, int] = defaultdict(int)
        self.detections = 0
        self.false = 0

    def add(self, truth: list, matched: dict[int, int], n_detections: int) -> None:
        found = set(matched.values())
        for p, _ in truth:
            b = size_bin(p.side)
            self.total[b] += 1
            self.hit[b] += p.gid in found
        self.detections += n_detections
        self.false += n_detections - len(matched)

    def as_dict(self) -> dict[str, Any]:
        bins = [f"{lo}-{hi}" for lo, hi in SIZE_BINS]
        hits, total = sum(self.hit.values()), sum(self.total.values())
        return {"recall": {b: (self.hit[b] / self.total[b] if self.total[b] else None) for b in bins},
                "faces": {b: self.total[b] for b in bins},
                "recall_all": hits / total if total else None,
                "recall_40_63": self.hit["40-63"] / self.total["40-63"] if self.total["40-63"] else None,
                "recall_64_up": ((self.hit["64-99"] + self.hit["100-200"]) / (self.total["64-99"] + self.total["100-200"])
                                 if self.total["64-99"] + self.total["100-200"] else None),
                "precision": 1 - self.false / self.detections if self.detections else None,
                "detections": self.detections, "false_faces": self.false}


class TiledMediaPipe:
    """MediaPipe's short-range detector on overlapping tiles plus the whole frame, merged by
    non-maximum suppression (a candidate for large frames, measured here only)."""

    def __init__(self, face_model: Path, threshold: float, tile: int = 320, overlap: int = 64):
        self.finder = FaceFinder(FaceOptions(face_model, max_faces=100, landmarks=False, mode="image",
                                             min_detection_confidence=threshold))
        self.tile, self.step = tile, tile - overlap

    def find(self, rgb: np.ndarray, t_ms: float = 0.0) -> list:
        h, w = rgb.shape[:2]
        faces = list(self.finder.find(rgb))
        xs = list(range(0, max(1, w - self.tile), self.step)) + [max(0, w - self.tile)]
        ys = list(range(0, max(1, h - self.tile), self.step)) + [max(0, h - self.tile)]
        for y0 in sorted(set(ys)):
            for x0 in sorted(set(xs)):
                for f in self.finder.find(np.ascontiguousarray(rgb[y0:y0 + self.tile, x0:x0 + self.tile])):
                    x, y, fw, fh = f.box
                    f.box = (x + x0, y + y0, fw, fh)
                    faces.append(f)
        if len(faces) < 2:
            return faces
        keep = _nms(np.array([f.box for f in faces], np.float32), np.array([f.score for f in faces]), 0.3)
        return [faces[i] for i in keep]

    def close(self) -> None:
        self.finder.close()


def finders(face_model: Path, threshold: float, names: list[str]) -> dict[str, Any]:
    def yunet(passes: str, fine_every: int = YuNetOptions.fine_every, **more: Any) -> FaceFinder:
        return FaceFinder(FaceOptions(None, max_faces=100, landmarks=False, detector="yunet",
                                      yunet=YuNetOptions(passes=passes, fine_every=fine_every, **more),
                                      min_detection_confidence=threshold))

    made = {
        "yunet pyramid (coarse each frame + full every 6th, the default)": lambda: yunet("pyramid"),
        "yunet pyramid (coarse each frame + full every 4th)": lambda: yunet("pyramid", 4),
        "yunet pyramid (coarse each frame + full every 3rd)": lambda: yunet("pyramid", 3),
        "yunet pyramid (coarse + full each frame)": lambda: yunet("pyramid", 1),
        "yunet pyramid (coarse at most 480 px each frame + full every 6th)": lambda: yunet("pyramid", 6,
                                                                                          coarse_side=480),
        "yunet full resolution": lambda: yunet("full"),
        "yunet coarse (half the long side, at most 640)": lambda: yunet("coarse"),
        "mediapipe detector (whole frame)": lambda: FaceFinder(FaceOptions(
            face_model, max_faces=100, landmarks=False, min_detection_confidence=threshold)),
        "mediapipe detector on 320 px tiles": lambda: TiledMediaPipe(face_model, threshold),
    }
    return {k: v() for k, v in made.items() if not names or any(n in k for n in names)}


def finder_table(video: SceneVideo, face_model: Path, threshold: float, names: list[str]) -> dict[str, Any]:
    runs = finders(face_model, threshold, names)
    counts = {k: Counts() for k in runs}
    times: dict[str, list[float]] = {k: [] for k in runs}
    try:
        for i in range(video.n_frames):
            rgb = cv2.cvtColor(video.frame(i), cv2.COLOR_BGR2RGB)
            truth = video.truth(i)
            order = list(runs) if i % 2 == 0 else list(runs)[::-1]  # alternate who goes first
            for name in order:
                t0 = time.perf_counter()
                faces = runs[name].find(rgb, i * 1000.0 / FPS)
                times[name].append((time.perf_counter() - t0) * 1000)
                counts[name].add(truth, match(truth, [f.box for f in faces], [f.score for f in faces]), len(faces))
    finally:
        for f in runs.values():
            f.close()
    return {k: {**counts[k].as_dict(), "ms_p50": float(np.median(times[k])),
                "ms_p95": float(np.percentile(times[k], 95))} for k in runs}


def offline_predictions(model: str, pool: list, samples: set[int]) -> dict[int, int]:
    """The model on each original image, framed as in training."""
    from realtime.reader import AffectReader

    out: dict[int, int] = {}
    idx = sorted(samples)
    with AffectReader(model) as reader:
        for k in range(0, len(idx), 32):
            chunk = idx[k:k + 32]
            crops = [resize_square(to_rgb(cv2.cvtColor(cv2.imread(pool[i].path), cv2.COLOR_BGR2RGB)),
                                   reader.spec.input_size) for i in chunk]
            for i, r in zip(chunk, reader.predict_many(crops)):
                out[i] = int(np.argmax(r.probabilities))
    return out


def pipeline_table(video: SceneVideo, pool: list, labels: list[str], faces: str, threshold: float,
                   model: str | None) -> dict[str, Any]:
    from realtime.options import FaceFindingOptions, OutputOptions
    from realtime.pipeline import DEFAULT_SPINNING, DEFAULT_THREADS, Pipeline, PipelineOptions, default_model

    model = model or str(default_model(DEFAULT_THREADS, DEFAULT_SPINNING))
    label_index = {name: i for i, name in enumerate(labels)}
    counts = Counts()
    right: dict[str, int] = defaultdict(int)
    read: dict[str, int] = defaultdict(int)
    tracks: dict[int, list[int]] = defaultdict(list)
    by_n: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"frame": [], "latency": []})
    found_samples: dict[int, Placed] = {}
    opts = PipelineOptions(source=SceneSource(video), model=model,
                           faces=FaceFindingOptions(faces, face_model=str(FACE_MODEL), min_face_confidence=threshold,
                                                    max_faces=30),
                           outputs=OutputOptions(draw=True))
    t0 = time.perf_counter()
    with Pipeline(opts) as p:
        for r in p:
            truth = video.truth(r.index)
            boxes = [f.box for f in r.faces]
            matched = match(truth, boxes, [f.det_score for f in r.faces])
            counts.add(truth, matched, len(r.faces))
            by_gid = {p_.gid: p_ for p_, _ in truth}
            for d, gid in matched.items():
                face, placed = r.faces[d], by_gid[gid]
                tracks[gid].append(face.track_id)
                b = size_bin(placed.side)
                read[b] += 1
                right[b] += label_index[face.expression] == placed.label
                found_samples[gid] = placed
            by_n[len(truth)]["frame"].append(r.timings["frame"])
            by_n[len(truth)]["latency"].append(r.timings["latency"])
        wall = time.perf_counter() - t0
        frames = p.summary.frames
    offline = offline_predictions(model, pool, {p_.sample for p_ in found_samples.values()})
    off_right: dict[str, int] = defaultdict(int)
    off_n: dict[str, int] = defaultdict(int)
    for placed in found_samples.values():  # per face, the offline reading of its original image
        b = size_bin(placed.side)
        off_n[b] += 1
        off_right[b] += offline[placed.sample] == placed.label
    switches = sum(sum(a != b for a, b in zip(ids, ids[1:])) for ids in tracks.values())
    bins = [f"{lo}-{hi}" for lo, hi in SIZE_BINS]
    med = statistics.median
    return {**counts.as_dict(), "model": Path(model).name, "faces_option": faces, "frames": frames,
            "fps": frames / wall, "id_switches": switches, "tracked_faces": len(tracks),
            "accuracy": {b: (right[b] / read[b] if read[b] else None) for b in bins},
            "accuracy_all": sum(right.values()) / max(1, sum(read.values())),
            "offline_accuracy": {b: (off_right[b] / off_n[b] if off_n[b] else None) for b in bins},
            "offline_accuracy_all": sum(off_right.values()) / max(1, sum(off_n.values())),
            "by_faces": {n: {"frames": len(v["frame"]), "work_ms_p50": med(v["frame"]),
                             "latency_ms_p50": med(v["latency"]),
                             "latency_ms_p95": float(np.percentile(v["latency"], 95))}
                         for n, v in sorted(by_n.items())}}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if not pct else f"{v:.1%}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    ap.add_argument("--tables", nargs="+", default=["finders", "pipeline"], choices=["finders", "pipeline"])
    ap.add_argument("--finders", nargs="*", default=[], help="only the finders whose name contains one of these")
    ap.add_argument("--faces", default="auto", help="the pipeline's --faces")
    ap.add_argument("--threshold", type=float, default=0.4, help="the finders' score threshold (default 0.4)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--part", default="test", choices=["test", "train"],
                    help="held-out faces (test, default) or the rest (train: for choosing)")
    ap.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scene-frames", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    pool, labels = face_pool(args.part, args.seed)
    report: dict[str, Any] = {"part": args.part, "threshold": args.threshold, "cpu": _cpu(), "results": {}}
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        scenes = plan(len(pool), [s.expression for s in pool], w, h, tuple(args.counts), args.repeats,
                      args.scene_frames, args.seed)
        video = SceneVideo(scenes, pool, w, h)
        n_faces = sum(len(s.faces) for s in scenes)
        print(f"{size}: {video.n_frames} frames, {n_faces} faces ({args.part} part)", file=sys.stderr)
        res: dict[str, Any] = {"frames": video.n_frames, "faces": n_faces}
        if "finders" in args.tables:
            res["finders"] = finder_table(video, FACE_MODEL, args.threshold, args.finders)
            print(f"\n{size}, finders (score ≥ {args.threshold}):\n| finder | recall 24-39 | 40-63 | 64-99 "
                  "| 100-200 | precision | ms p50 / p95 |\n| --- | --- | --- | --- | --- | --- | --- |")
            for k, r in res["finders"].items():
                rec = r["recall"]
                print(f"| {k} | " + " | ".join(_fmt(rec[b]) for b in rec) + f" | {_fmt(r['precision'])} | "
                      f"{r['ms_p50']:.1f} / {r['ms_p95']:.1f} |")
        if "pipeline" in args.tables:
            r = res["pipeline"] = pipeline_table(video, pool, labels, args.faces, args.threshold, args.model)
            print(f"\n{size}, pipeline --faces {args.faces} ({r['model']}): recall "
                  + ", ".join(f"{b} {_fmt(v)}" for b, v in r["recall"].items())
                  + f"; precision {_fmt(r['precision'])}; FPS {r['fps']:.1f}; ID switches {r['id_switches']} "
                  f"over {r['tracked_faces']} faces")
            print("| face size px | recall | accuracy (camera) | accuracy (original image) |\n| --- | --- | --- | --- |")
            for b in r["recall"]:
                print(f"| {b} | {_fmt(r['recall'][b])} | {_fmt(r['accuracy'][b])} | {_fmt(r['offline_accuracy'][b])} |")
            print("| faces in frame | frames | work ms p50 | latency ms p50 / p95 |\n| --- | --- | --- | --- |")
            for n, v in r["by_faces"].items():
                print(f"| {n} | {v['frames']} | {v['work_ms_p50']:.1f} | {v['latency_ms_p50']:.1f} / "
                      f"{v['latency_ms_p95']:.1f} |")
        report["results"][size] = res
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _cpu() -> str:
    from bench.peers import lscpu_model

    return lscpu_model()


if __name__ == "__main__":
    raise SystemExit(main())
