"""CPU time of one training step (forward, backward, AdamW) of the project's model, per variant:
memory layout (NCHW or channels-last NHWC, `train.channels_last`), frozen stem blocks
(`train.freeze_blocks`) and input size. Random faces (speed does not depend on them), batch 64 as
the recipe trains; the rounds alternate between the variants and each variant's figure is the
median step over all rounds, so a machine that slows down mid-run slows every variant alike.

Usage: python bench/train_step_speed.py [--backbone mobilenet_v2] [--threads 2] [--rounds 3]
       [--steps 3] [--variant SIZE:LAYOUT:FROZEN ...]   (e.g. 112:nhwc:0, 160:nchw:4)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not bench/: bench/realtime.py would shadow the realtime package

DEFAULT_VARIANTS = ("112:nchw:0", "112:nhwc:0", "112:nhwc:4", "160:nhwc:0", "160:nhwc:4")


def make_step(backbone: str, size: int, layout: str, frozen: int, batch: int):
    """A closure running one optimisation step of a fresh model on a fixed random batch."""
    import torch

    from train.fit import compute_loss
    from train.models import backbone_blocks, build_model

    torch.manual_seed(0)
    model = build_model(backbone, pretrained="none", input_size=size)
    blocks = backbone_blocks(model.backbone)[:frozen]
    for block in blocks:
        block.requires_grad_(False)
    if layout == "nhwc":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch_data = {"image": torch.randn(batch, 3, size, size), "expression": torch.randint(0, 8, (batch,)),
                  "va": torch.zeros(batch, 2), "va_mask": torch.zeros(batch, 2, dtype=torch.bool)}
    cfg = {"loss": {"expression": 1.0, "va": 1.0, "va_loss": "ccc+mse", "landmarks": 0, "aus": 0},
           "train": {"label_smoothing": 0.0}}

    def step() -> float:
        model.train()
        for block in blocks:
            block.eval()
        t0 = time.perf_counter()
        loss, _ = compute_loss(model(batch_data["image"]), batch_data, cfg, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant per round (after one warm-up)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--variant", action="append", help="SIZE:LAYOUT:FROZEN, layout nchw or nhwc")
    ap.add_argument("--sizes", type=int, nargs="+", help="shorthand for --variant SIZE:nchw:0 per size")
    args = ap.parse_args()
    if args.sizes:
        args.variant = (args.variant or []) + [f"{size}:nchw:0" for size in args.sizes]
    import torch

    torch.set_num_threads(args.threads)
    variants = []
    for item in args.variant or DEFAULT_VARIANTS:
        size, layout, frozen = item.split(":")
        if layout not in ("nchw", "nhwc"):
            raise SystemExit(f"--variant {item}: layout must be nchw or nhwc")
        variants.append((int(size), layout, int(frozen)))
    steps = {v: make_step(args.backbone, *v, batch=args.batch) for v in variants}
    for step in steps.values():
        step()  # warm-up: allocator, oneDNN kernels
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v, step in steps.items():
            times[v] += [step() for _ in range(args.steps)]
    base = statistics.median(times[variants[0]])
    print(f"| {args.backbone} input | layout | frozen blocks | step s (median) | speed vs {variants[0][0]} px "
          f"{variants[0][1].upper()} {variants[0][2]} frozen |")
    print("| --- | --- | --- | --- | --- |")
    for v in variants:
        med = statistics.median(times[v])
        print(f"| {v[0]} | {v[1].upper()} | {v[2]} | {med:.3f} | {base / med:.2f}× |")
    print(f"\nbatch {args.batch}, {args.threads} threads, {args.rounds} rounds × {args.steps} steps each, "
          f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
