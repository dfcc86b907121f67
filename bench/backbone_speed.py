"""Realtime model time of each registered backbone at the recipe's input size: the
model built with random weights (speed does not depend on them), exported to ONNX
through the project's exporter (FP32, and INT8 calibrated on generated faces),
timed in ONNX Runtime at batch 1 — one face, as the camera reads it — with
the rounds alternating between backbones; medians.

Usage: python bench/backbone_speed.py [--size 112] [--threads 1] [--rounds 7] [--backbone NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not bench/: bench/realtime.py would shadow the realtime package

DEFAULT = ("mobilenet_v2", "efficientnet_lite0", "mobilenet_v3_large", "mobilenet_v3_small")


def build_onnx(name: str, size: int, out_dir: Path, calibration: Path) -> dict[str, Path]:
    from affect.labels import EXPRESSIONS
    from export.int8 import export_int8
    from export.onnx_export import export_onnx
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model, count_parameters

    model = build_model(name, pretrained=None, input_size=size)
    ckpt = out_dir / f"{name}.pt"
    save_checkpoint(ckpt, model=model, spec=spec_for(model, list(EXPRESSIONS)), model_args=model_args(model, 512, 0.3))
    fp32 = export_onnx(ckpt, out_dir / f"{name}.onnx")
    int8 = export_int8(fp32, calibration, out_dir / f"{name}.int8.onnx")
    return {"params": count_parameters(model), "fp32": fp32, "int8": int8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=50, help="faces per round")
    ap.add_argument("--backbone", action="append")
    args = ap.parse_args()
    from inference.backends import create_backend

    names = args.backbone or list(DEFAULT)
    tmp = Path(tempfile.mkdtemp(prefix="backbone_speed_"))
    calibration = tmp / "faces.txt"  # training faces of the shared AffectNet part: speed only, no figure rests on them
    faces = sorted((REPO.parent / "shared/data/affectnet/images").glob("*.jpg"))[:64]
    calibration.write_text("\n".join(str(f) for f in faces) + "\n")
    files = {n: build_onnx(n, args.size, tmp, calibration) for n in names}
    backends = {(n, k): create_backend(str(files[n][k]), threads=args.threads) for n in names for k in ("fp32", "int8")}
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in backends}
    for b in backends.values():  # warm-up
        for _ in range(5):
            b.predict(x)
    for _ in range(args.rounds):
        for key, b in backends.items():
            t = time.perf_counter()
            for _ in range(args.iters):
                b.predict(x)
            times[key].append((time.perf_counter() - t) * 1000 / args.iters)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"{args.size} px, batch 1, {args.threads} ORT thread(s), {args.rounds} alternating rounds of "
          f"{args.iters} faces; CPU {model_name}")
    print("| backbone | parameters (M) | FP32 ms/face | INT8 ms/face | INT8 / FP32 |")
    print("| --- | --- | --- | --- | --- |")
    for n in names:
        f, q = statistics.median(times[(n, "fp32")]), statistics.median(times[(n, "int8")])
        print(f"| {n} | {files[n]['params'] / 1e6:.2f} | {f:.2f} | {q:.2f} | {q / f:.2f} |")


if __name__ == "__main__":
    main()
