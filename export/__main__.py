"""`python -m export {onnx,int8,fp16,tensorrt,calibrate,bench} …` — a thin parser over the format functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from affect.face_model import FaceModelError
from export.common import ExportError
from export.formats import FACE_MODEL_HELP, exportable, format_by_argument, run_format


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m export", description="Export affectcam models and benchmark them.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    for fmt in exportable():  # one sub-command per row of the format table, with the row's options
        fmt.add_arguments(sub.add_parser(fmt.argument, help=fmt.help))

    p = sub.add_parser("calibrate", help="fit the expression temperature on a run's validation parts → "
                                         "a copy of the ONNX file with affect.temperature")
    p.add_argument("model", type=Path, help="model.onnx (FP32 or INT8: each gets its own temperature)")
    p.add_argument("--run-dir", type=Path, required=True,
                   help="the training run whose validation split to fit on (config.yaml + splits.json; "
                        "bench/split_dir.py writes one from a config)")
    p.add_argument("--source", action="append", help="only this validation part (repeatable; default all)")
    p.add_argument("-o", "--out", type=Path, help="default MODEL.calibrated.onnx; may be MODEL itself")
    p.add_argument("--eval-dir", type=Path,
                   help="keep each part's predictions.csv and metrics.json (as train eval writes them, before "
                        "calibration) in EVAL_DIR/val_PART/")

    p = sub.add_parser("bench", help="latency / throughput / accuracy table over model files")
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--all-formats", action="store_true",
                   help="MODELS is one checkpoint.pt: export it to every format of the table (into OUT-formats/; "
                        "GPU-only formats skipped without CUDA), print one status row per format, then bench "
                        "every file made")
    p.add_argument("--data", type=Path,
                   help="labelled faces: a run's splits.json (its held-out test part; the default when the first "
                        "model's folder has one) or a folder (AffectNet layout or class folders: a model trained "
                        "on it is warned about)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--limit", type=int, help="evaluation images, at least 1 (default: all)")
    p.add_argument("--providers", nargs="*", help="ONNX Runtime providers, e.g. cuda cpu")
    p.add_argument("-o", "--out", type=Path, default=Path("bench"), help="writes OUT.md and OUT.json")
    p.add_argument("--face-model", type=Path, help=FACE_MODEL_HELP)
    return ap


# Our own packages: their INFO lines are what a user reads (what was written, its size, the parity figures).
OWN_LOGGERS = ("export", "affect", "train", "realtime")


def _library_quiet(record: logging.LogRecord) -> bool:
    """The ONNX/quantisation libraries (onnxslim, onnxruntime.quantization, which logs
    through the root logger) are chatty at INFO: below WARNING only our own lines pass.
    A filter on the handler, not a level on the root logger, which would silence ours too."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] in OWN_LOGGERS


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    fresh = not root.handlers  # called in-process (tests), the host's handlers are left alone
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    if fresh and not verbose:
        for handler in root.handlers:
            handler.addFilter(_library_quiet)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        if args.command == "bench":
            from export.bench import BenchOptions, export_all_formats, run_bench, write_tables

            options = BenchOptions(data=args.data, batch_sizes=tuple(args.batch), threads=args.threads,
                                   warmup=args.warmup, min_iters=args.min_iters, min_seconds=args.min_seconds,
                                   limit=args.limit, providers=tuple(args.providers) if args.providers else None,
                                   face_model=args.face_model)
            models, statuses = args.models, None
            if args.all_formats:
                if len(args.models) != 1:
                    raise ExportError("--all-formats takes one checkpoint.pt, the source of every format")
                models, statuses = export_all_formats(args.models[0], args.out.with_name(f"{args.out.name}-formats"),
                                                      options)
            print(write_tables(run_bench(models, options), args.out, options, statuses))
            return 0
        if args.command == "calibrate":
            from export.calibrate import calibrate_onnx

            print(calibrate_onnx(args.model, args.run_dir, args.out, args.source, args.eval_dir).summary())
            return 0
        fmt = format_by_argument(args.command)
        call_args, call_kwargs = fmt.call_arguments(args)
        run_format(fmt.argument, *call_args, **call_kwargs)
    except (ExportError, FaceModelError) as exc:  # a face model not found is the user's to fix, like a file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        from affect.errors import exit_for_missing_extra

        return exit_for_missing_extra(exc, f"python -m {__package__} {args.command}")
    except KeyboardInterrupt:
        print("error: interrupted; no output file was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
