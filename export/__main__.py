"""`python -m export {onnx,int8,fp16,tensorrt,bench} …` — a thin parser over the format functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from affect.face_model import FaceModelError
from export.common import ExportError

FACE_MODEL_HELP = ("MediaPipe face_landmarker.task that scores the faces' blendshapes, for models that take them "
                   "(default: $AFFECTCAM_FACE_MODEL, the user cache, else a one-time download)")


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m export", description="Export affectcam models and benchmark them.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("onnx", help="checkpoint → ONNX (contract names + metadata), parity-checked")
    p.add_argument("checkpoint", type=Path, nargs="+",
                   help="checkpoint.pt; several: one graph averaging their outputs (an ensemble)")
    p.add_argument("-o", "--out", type=Path)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--data", type=Path, help="face crops for the parity check (dataset or folder)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |ORT - PyTorch| per output")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)
    p.add_argument("--blendshape-fusion", type=float, nargs="?", const=0.5, metavar="WEIGHT",
                   help="models that take blendshapes: mix their expression log-probabilities with a "
                        "logistic regression over the blendshapes (fitted on the first checkpoint's run, its "
                        "training faces), WEIGHT 0.5 if not given; faces without blendshapes are unchanged")

    p = sub.add_parser("int8", help="ONNX → static INT8 ONNX calibrated on face crops")
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True, help="calibration face crops (a few hundred): a folder, a .txt list of images, or a run's splits.json (its training part; never calibrate on held-out faces)")
    p.add_argument("-o", "--out", type=Path)
    p.add_argument("--format", dest="quant_format", choices=["QDQ", "QOperator"], default="QDQ")
    p.add_argument("--no-per-channel", action="store_true")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument("--activations", choices=["uint8", "int8"], default="uint8")
    p.add_argument("--calibrate", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("--exclude", nargs="*", choices=["first_conv", "stem", "heads"],
                   help="nodes kept in float (default: stem = the first 3 convs; give --exclude alone for none)")
    p.add_argument("--num-calibration", type=int, default=300)
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)

    p = sub.add_parser("fp16", help="ONNX → FP16 ONNX (float32 I/O) for GPUs")
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--out", type=Path)

    p = sub.add_parser("tensorrt", help="ONNX → TensorRT engine + model.engine.json")
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--out", type=Path)
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    p.add_argument("--data", type=Path, help="calibration face crops (needed with --int8)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--opt-batch", type=int)
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache", type=Path)
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP + "; used with --int8")

    p = sub.add_parser("bench", help="latency / throughput / accuracy table over model files")
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--data", type=Path, help="labelled faces (AffectNet layout or class folders)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--limit", type=int, help="evaluation images (default: all)")
    p.add_argument("--providers", nargs="*", help="ONNX Runtime providers, e.g. cuda cpu")
    p.add_argument("-o", "--out", type=Path, default=Path("bench"), help="writes OUT.md and OUT.json")
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # The ONNX/quantisation libraries are chatty at INFO; our own lines are the ones users need.
    for noisy in ("onnxslim", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "bench":
            from export.bench import BenchOptions, run_bench, write_tables

            options = BenchOptions(data=args.data, batch_sizes=tuple(args.batch), threads=args.threads,
                                   warmup=args.warmup, min_iters=args.min_iters, min_seconds=args.min_seconds,
                                   limit=args.limit, providers=tuple(args.providers) if args.providers else None,
                                   face_model=args.face_model)
            print(write_tables(run_bench(args.models, options), args.out, options))
            return 0
        from export.formats import run_format

        if args.command == "onnx":
            run_format("onnx", args.checkpoint, args.out, opset=args.opset, parity_data=args.data,
                       tolerance=args.tolerance, simplify=not args.no_simplify, face_model=args.face_model,
                       blendshape_fusion=args.blendshape_fusion)
        elif args.command == "int8":
            from export.int8 import Int8Options

            opts = Int8Options(quant_format=args.quant_format, per_channel=not args.no_per_channel,
                               reduce_range=args.reduce_range, activation_type=args.activations,
                               calibrate_method=args.calibrate, exclude=tuple(args.exclude) if args.exclude is not None else Int8Options.exclude,
                               num_calibration=args.num_calibration, face_model=args.face_model)
            run_format("int8", args.model, args.data, args.out, opts)
        elif args.command == "fp16":
            run_format("fp16", args.model, args.out)
        elif args.command == "tensorrt":
            from export.tensorrt_engine import EngineOptions

            opts = EngineOptions(precision=args.precision or "fp16", max_batch=args.max_batch,
                                 opt_batch=args.opt_batch, workspace_mb=args.workspace_mb,
                                 timing_cache=args.timing_cache, calibration_data=args.data,
                                 face_model=args.face_model)
            run_format("tensorrt", args.model, args.out, opts)
    except (ExportError, FaceModelError) as exc:  # a face model not found is the user's to fix, like a file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        from train import exit_for_missing_extra

        return exit_for_missing_extra(exc, f"python -m {__package__} {args.command}")
    except KeyboardInterrupt:
        print("error: interrupted; no output file was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
