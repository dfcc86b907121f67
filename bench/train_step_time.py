"""Seconds per training step (forward + backward + AdamW) by input size: what
a larger input would cost the training recipe on this CPU.

    python bench/train_step_time.py --sizes 160 192 224 --threads 1 --batch 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.models import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    medians = {}
    for size in args.sizes:
        model = build_model(args.backbone, pretrained="none", input_size=size).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(args.batch, 3, size, size)
        times = []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            optimizer.zero_grad()
            out = model(x)
            (out["expression"].logsumexp(1).mean() + out["valence_arousal"].square().mean()).backward()
            optimizer.step()
            if step:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - start)
        medians[size] = statistics.median(times)
    base = medians[args.sizes[0]]
    print(f"{args.backbone}, batch {args.batch}, {args.threads} thread(s), median of {args.steps} steps")
    for size, t in medians.items():
        print(f"  {size} px: {t:.2f} s/step ({t / base:.2f}× {args.sizes[0]} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
