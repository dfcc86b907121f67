"""Measure export backends for the default MobileNetV2 on this CPU (not a test).

1. Split the shared AffectNet crops into calibration/train and held-out eval
   folders (symlinks under --work, nothing copied into the repo).
2. Unless --checkpoint is given, fit only the heads of an ImageNet-initialised
   MobileNetV2 on cached backbone features (a minute on 2 cores), so that
   accuracy changes under INT8 are measured on a model that predicts something.
3. Export ONNX FP32 (parity-checked), INT8 variants and FP16, then run
   `python -m export bench` on the held-out folder.

    python bench/export_backends.py --size 224 --work /tmp/affectcam-bench
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import torch

from affect.labels import EXPRESSIONS
from export.bench import BenchOptions, run_bench, write_tables
from export.faces import batches, load_faces
from export.fp16 import export_fp16
from export.int8 import Int8Options, export_int8
from export.onnx_export import export_onnx
from train.checkpoint import model_args, save_checkpoint, spec_for
from train.models import build_model

AFFECTNET = Path(__file__).resolve().parents[2] / "shared" / "data" / "affectnet"


def split_affectnet(root: Path, work: Path, n_eval: int = 640, seed: int = 0) -> tuple[Path, Path]:
    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = {"eval": [ids[i] for i in order[:n_eval]], "train": [ids[i] for i in order[n_eval:]]}
    for name, members in parts.items():
        for sub in ("images", "annotations"):
            (work / name / sub).mkdir(parents=True, exist_ok=True)
        for i in members:
            dst = work / name / "images" / f"{i}.jpg"
            if not dst.exists():
                os.symlink(root / "images" / f"{i}.jpg", dst)
            for kind in ("exp", "val", "aro"):
                dst = work / name / "annotations" / f"{i}_{kind}.npy"
                if not dst.exists():
                    os.symlink(root / "annotations" / f"{i}_{kind}.npy", dst)
    return work / "train", work / "eval"


def fit_heads(train_dir: Path, size: int, out: Path, epochs: int = 60) -> Path:
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", pretrained="auto", input_size=size, hidden=256, dropout=0.2).eval()
    spec = spec_for(model, list(EXPRESSIONS), trained_on=f"AffectNet subset {train_dir.name} (heads only)")
    faces = load_faces(train_dir)
    with torch.no_grad():  # inference-mode tensors cannot feed the head fit's autograd
        feats = torch.cat([model.backbone(torch.from_numpy(x)) for x in batches(faces, spec, 64)])
    y = torch.from_numpy(faces.expression)
    va = torch.from_numpy(np.stack([faces.valence, faces.arousal], 1))
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.AdamW(heads, lr=1e-3, weight_decay=1e-4)
    weight = 1.0 / torch.bincount(y, minlength=8).clamp(min=1).float()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(128):
            h = model.neck(feats[idx])
            loss = torch.nn.functional.cross_entropy(model.expression(h), y[idx], weight=weight / weight.mean())
            loss = loss + torch.nn.functional.mse_loss(torch.tanh(model.valence_arousal(h)), va[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return save_checkpoint(out, model=model, spec=spec, model_args=model_args(model, 256, 0.2),
                           config={"note": "bench/export_backends.py heads-only fit"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--work", type=Path, default=Path("/tmp/affectcam-bench"))
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--variants", action="store_true", help="also try QOperator / reduce_range / exclusions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    train_dir, eval_dir = split_affectnet(AFFECTNET, args.work)
    out = args.work / f"mv2_{args.size}"
    ckpt = args.checkpoint or fit_heads(train_dir, args.size, out / "checkpoint.pt")
    onnx_path = export_onnx(ckpt, out / "model.onnx", parity_data=eval_dir)
    models = [ckpt, onnx_path, export_int8(onnx_path, train_dir, out / "model.int8.onnx")]
    if args.variants:
        for name, opts in {
            "qop": Int8Options(quant_format="QOperator"),
            "rr": Int8Options(reduce_range=True),
            "quantfirst": Int8Options(exclude=()),
            "s8": Int8Options(activation_type="int8"),
            "exheads": Int8Options(exclude=("first_conv", "heads")),
        }.items():
            models.append(export_int8(onnx_path, train_dir, out / f"model.int8-{name}.onnx", opts))
    models.append(export_fp16(onnx_path, out / "model.fp16.onnx"))
    options = BenchOptions(data=eval_dir, batch_sizes=tuple(args.batch), threads=args.threads)
    print(write_tables(run_bench(models, options), out / "bench", options))


if __name__ == "__main__":
    main()
