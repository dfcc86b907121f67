"""`python -m train eval`: run a checkpoint or ONNX model over a dataset and
write metrics.json, predictions.csv, plots and report.md into one folder.

The model is run through `inference.create_backend`, the same code
the live camera uses, so a checkpoint and its ONNX export are evaluated
exactly as they will be deployed; the steps are the one evaluator's
(`inference.evaluation`: collect, predict, score), as in fit's validation
and `export bench`. Images come from `train.data.AffectDataset`
(the training pipeline's eval path: same crop and normalisation); true labels
come from the samples themselves, mapped by name onto the model's labels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affect.datasets.loaders import load_dataset
from affect.datasets.runs import RunError, read_run
from affect.files import atomic_write_json, atomic_write_text
from affect.metrics import MetricsError, compute_metrics
from affect.preprocess import expression_probabilities
from affect.spec import ModelSpec
from inference.backends import create_backend
from inference.evaluation import (
    Targets,
    collect_samples,
    dataset_metrics,
    non_finite,
    predicted_labels,
    predictions_csv,
    shared_classes,
)
from inference.evaluation import predict as run_batches
from train.report import plot_confusion, plot_examples, plot_va_scatter, write_curves, write_report

__all__ = ["EvalError", "evaluate", "evaluate_cli", "predictions_to_metrics", "write_curves"]

log = logging.getLogger(__name__)


class EvalError(ValueError):
    """An evaluation that cannot run: no samples, labels that do not match, NaN outputs."""


# --- data ----------------------------------------------------------------------------------------

def _parse_data_arg(data: str) -> dict[str, Any]:
    kind, _, root = data.partition(":")
    if not root:
        raise EvalError(f"--data {data!r}: use TYPE:ROOT, e.g. affectnet:../shared/data/affectnet")
    return {"type": kind, "root": root}


def _run_dir_samples(model_path: Path, run_dir: str | os.PathLike | None, split: str):
    """The held-out part of a training run (its config.yaml + splits.json)."""
    run = Path(run_dir) if run_dir else model_path.parent
    try:
        _, splits, infos = read_run(run)
    except RunError as exc:
        raise EvalError(str(exc)) from None
    wanted = None if split == "all" else set(splits.get(split, []))
    if wanted is not None and not wanted:
        raise EvalError(f"{run / 'splits.json'}: the {split!r} split is empty")
    return infos, wanted


def _collect(model_path: Path, data: Any, split: str, run_dir: Any, labels: list[str], limit: int | None,
             source: str | None = None):
    """→ (samples, label list Sample.expression indexes, dataset's classes or None, dataset name)."""
    if data is None:
        infos, wanted = _run_dir_samples(model_path, run_dir, split)
        if source is not None:
            known = [i.name for i in infos]
            if source not in known:
                raise EvalError(f"--source {source!r}: the run has no dataset of that name (it has {known})")
            infos = [i for i in infos if i.name == source]
        samples, classes, names, seen, twice = [], set(), [], set(), {}
        for info in infos:
            picked = [s for s in info.samples if wanted is None or s.path in wanted]
            # Two parts can hold the same faces under other labels (FER2013 PublicTest as
            # ferplus_test and fer2013_test): pooled, each face counts once, under the first part.
            again = [s for s in picked if s.path in seen]
            if again:
                twice[info.name] = len(again)
                picked = [s for s in picked if s.path not in seen]
            seen.update(s.path for s in picked)
            samples += picked
            if picked:
                classes |= set(info.labels)
                names.append(info.name)  # only the datasets this split draws from
        for part, n in twice.items():
            log.warning("%s: %d faces already counted under an earlier part left out of the pooled %s split; "
                        "evaluate each part on its own with --source %s", part, n, split, part)
        label_set = list(infos[0].label_set) if infos else labels
        name = f"{'+'.join(names)}:{split}"
        if twice:
            name += " (each face once: " + ", ".join(f"{n} of {p} counted earlier" for p, n in twice.items()) + ")"
        return samples, label_set, sorted(classes) or None, name
    if isinstance(data, str):
        data = _parse_data_arg(data)
    if isinstance(data, dict):
        # The loader spreads `limit` over the whole dataset (every class), unlike a head slice.
        info = load_dataset({**data, "limit": data.get("limit", limit)}, labels=labels)
        data = info
    if hasattr(data, "samples") and hasattr(data, "label_set"):  # a DatasetInfo
        return list(data.samples), list(data.label_set), list(data.labels), data.name
    samples = list(data)
    origin = samples[0].source if samples and getattr(samples[0], "source", "") else "samples"
    # Built-in loaders index the canonical order; with bare samples the dataset's
    # class set is unknown, so no classes are left out.
    from affect.labels import EXPRESSIONS

    return samples, list(EXPRESSIONS), None, origin


# --- running the model ---------------------------------------------------------------------------

def open_backend(model_path: Path):
    """The model's inference backend (`inference.create_backend`)."""
    return create_backend(str(model_path))


def _attach_blendshapes(samples: list, names: list[str], face_model: Any, model_path: Path) -> dict[str, int]:
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.face_model import FaceModelError, resolve_face_model

    try:
        path = resolve_face_model(face_model)
    except FaceModelError as exc:
        raise EvalError(f"{model_path}: the model takes blendshapes, which need the face model: {exc}") from None
    counts = attach_blendshapes(samples, names, path)
    log.info("blendshapes: faces found in %d of %d samples", counts["found"], counts["faces"])
    return counts


def predict(backend, loader, tta: bool, model_path: Path) -> dict[str, np.ndarray]:
    """Run `backend` over a loader of AffectDataset batches through the one prediction
    core (`affect.predict.predict_batches`): {index, logits, va[, aus], n_bad}."""
    n_bad = 0

    def batches():
        nonlocal n_bad
        for batch in loader:
            n_bad += int(batch.get("n_bad", 0))
            if "image" not in batch or len(batch["image"]) == 0:  # every image of this batch was unreadable
                continue
            b = np.asarray(batch["blendshapes"], np.float32) if "blendshapes" in batch else None
            yield np.asarray(batch["image"]), b, np.asarray(batch["index"])

    result = run_batches(backend.predict, batches(), tta, backend.spec.blendshapes)
    if "index" not in result:
        raise EvalError(f"{model_path}: no readable images in the dataset ({n_bad} unreadable)")
    broken = non_finite(result)
    if broken:
        raise EvalError(f"{model_path}: the model produced {broken}")
    result["n_bad"] = np.array(n_bad)
    return result


# --- outputs -------------------------------------------------------------------------------------

def _display_image(item_image: Any, spec: ModelSpec) -> np.ndarray:
    x = item_image.numpy() if hasattr(item_image, "numpy") else np.asarray(item_image)
    x = x.transpose(1, 2, 0) * np.asarray(spec.std) + np.asarray(spec.mean)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def _example_grids(dataset, spec: ModelSpec, rows: np.ndarray, labels: list[str], y: np.ndarray,
                   pred: np.ndarray, conf: np.ndarray, out_dir: Path, n: int) -> None:
    """Most confident correct and most confident wrong predictions: the wrong
    ones a model is sure of are the ones worth looking at."""
    labelled = np.flatnonzero(y >= 0)
    for name, mask in (("correct", y[labelled] == pred[labelled]), ("incorrect", y[labelled] != pred[labelled])):
        chosen = labelled[mask]
        chosen = chosen[np.argsort(-conf[chosen], kind="stable")][:n]
        images, titles = [], []
        for i in chosen:
            try:
                images.append(_display_image(dataset[int(rows[i])]["image"], spec))
            except Exception as exc:  # an image that became unreadable since: show the rest
                log.warning("example %s: %s", i, exc)
                continue
            titles.append(f"true {labels[y[i]]}\npred {labels[pred[i]]} {conf[i]:.2f}")
        plot_examples(images, titles, out_dir / f"examples_{name}.png", heading=f"{name} predictions")


# --- the steps of one evaluation ------------------------------------------------------------------

@dataclass
class EvalSet:
    """What one evaluation runs over: the samples, their targets on the model's labels,
    the model's classes the dataset can have (None: all) and the dataset's name."""
    samples: list
    label_set: list[str]  # the labels Sample.expression indexes
    targets: Targets
    restrict: list[str] | None
    name: str


def collect_set(model_path: Path, spec: ModelSpec, data: Any, split: str, run_dir: Any, limit: int | None,
                source: str | None) -> EvalSet:
    """Step 1: the samples to evaluate and their targets (`inference.evaluation.collect`)."""
    labels = list(spec.labels)
    samples, label_set, dataset_classes, name = _collect(model_path, data, split, run_dir, labels, limit, source)
    if limit is not None:
        samples = samples[: int(limit)]
    if not samples:
        raise EvalError(f"{name}: the dataset is empty; nothing to evaluate")
    restrict = shared_classes(labels, dataset_classes)
    if restrict == []:
        raise EvalError(f"{name}: the model's labels {labels} share no class with the dataset's "
                        f"{list(dataset_classes)}")
    targets = collect_samples(samples, label_set, labels, list(spec.au_names))
    if (targets.expression < 0).all() and targets.lacking:
        raise EvalError(f"{name}: the model's labels {labels} share no class with the dataset's "
                        f"{sorted(targets.lacking)}")
    return EvalSet(samples, label_set, targets, restrict, name)


def eval_loader(evalset: EvalSet, spec: ModelSpec, blendshapes: bool, batch_size: int, num_workers: int):
    """The samples as AffectDataset batches (the training pipeline's eval crop and normalisation)."""
    from torch.utils.data import DataLoader

    from train import data as tdata

    dataset = tdata.AffectDataset(evalset.samples, size=spec.input_size, mean=spec.mean, std=spec.std,
                                  labels=evalset.label_set, augment=None,  # AUs are read from the samples
                                  blendshapes=spec.blendshapes if blendshapes else ())
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=tdata.collate_skip_bad)


def score_set(evalset: EvalSet, raw: dict[str, np.ndarray], spec: ModelSpec, model_path: Path,
              bootstrap: int, blendshape_note: str | None) -> dict:
    """Step 3: metrics.json for the readable images (`inference.evaluation.dataset_metrics`: the
    one evaluator's `score`, with the notes on what was left out)."""
    try:
        return dataset_metrics(evalset.targets.take(raw["index"]), raw, spec, restrict_to=evalset.restrict,
                               dataset=evalset.name, model=str(model_path), bootstrap=bootstrap,
                               skipped=int(raw["n_bad"]), blendshapes=blendshape_note)
    except MetricsError as exc:
        raise EvalError(f"{evalset.name}: {exc}") from None


def write_eval_dir(out_dir: Path, evalset: EvalSet, raw: dict[str, np.ndarray], metrics: dict, spec: ModelSpec,
                   dataset, model_path: Path, tta: bool, n_examples: int) -> None:
    """predictions.csv, metrics.json, the plots and report.md."""
    labels = list(spec.labels)
    rows = raw["index"]  # positions in `samples` of the readable images, in order
    targets = evalset.targets.take(rows)
    y, probs = targets.expression, expression_probabilities(raw["logits"], spec.temperature)
    aus_scored = "action_units" in metrics
    # Predicted label: argmax over the classes the metrics were computed on.
    pred_in_model, conf = predicted_labels(probs, labels, evalset.restrict)

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "predictions.csv", predictions_csv(
        [evalset.samples[i].path for i in rows], labels, targets, raw, temperature=spec.temperature,
        restrict_to=evalset.restrict, au_names=list(spec.au_names), aus=aus_scored))
    atomic_write_json(out_dir / "metrics.json", metrics)
    plot_confusion(metrics, out_dir / "confusion.png")
    plot_va_scatter(targets.va, raw["va"], out_dir / "va_scatter.png")
    _example_grids(dataset, spec, rows, labels, y, pred_in_model, conf, out_dir, n_examples)
    figures = ["confusion.png", "va_scatter.png", "examples_correct.png", "examples_incorrect.png"]
    write_report(metrics, out_dir / "report.md", figures,
                 extra=f"Model `{model_path.name}` ({spec.backbone}, {spec.input_size} px), "
                       f"labels {labels}{', test-time mirroring' if tta else ''}.")


# --- public API ----------------------------------------------------------------------------------

def evaluate(model_path: str | os.PathLike, data: Any, out_dir: str | os.PathLike, split: str = "test",
             batch_size: int = 64, limit: int | None = None, run_dir: str | os.PathLike | None = None,
             tta: bool = False, n_examples: int = 18, bootstrap: int = 1000, num_workers: int = 0,
             face_model: str | os.PathLike | None = None, blendshapes: bool = True,
             source: str | None = None) -> dict:
    """Evaluate a checkpoint (.pt) or ONNX model and write the eval folder.

    `data`: a dataset config dict (`{"type": "affectnet", "root": DIR}`), a
    "TYPE:ROOT" string, an `affect.datasets.records.DatasetInfo`, a list of `Sample`s, or None
    for the `split` part of the training run in `run_dir` (default: the
    model's folder). A model that takes blendshapes gets each face's (from the
    landmarker `face_model`, cached), or none with `blendshapes=False`.
    Returns the metrics.json dict. The steps: collect (`collect_set`), predict
    (`predict`), score (`score_set`), write (`write_eval_dir`).
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise EvalError(f"{model_path}: model file not found")
    with open_backend(model_path) as backend:
        spec: ModelSpec = backend.spec
        evalset = collect_set(model_path, spec, data, split, run_dir, limit, source)
        blendshape_note = None
        if spec.blendshapes:
            blendshape_note = "none given"
            if blendshapes:
                counts = _attach_blendshapes(evalset.samples, list(spec.blendshapes), face_model, model_path)
                blendshape_note = f"landmarker found {counts['found']} of {counts['faces']} faces"
        loader = eval_loader(evalset, spec, blendshapes, batch_size, num_workers)
        raw = predict(backend, loader, tta, model_path)
    metrics = score_set(evalset, raw, spec, model_path, bootstrap, blendshape_note)
    write_eval_dir(Path(out_dir), evalset, raw, metrics, spec, loader.dataset, model_path, tta, n_examples)
    return metrics


def predictions_to_metrics(predictions_csv: str | os.PathLike, restrict_to: Sequence[str] | None = None,
                           bootstrap: int = 1000, dataset: str = "", model: str = "") -> dict:
    """Recompute the metrics from a predictions.csv (p_<label> columns are the
    model's probabilities, its temperature applied). With `restrict_to` None, the restriction recorded in the
    sibling metrics.json ("restricted_to") is used, so the numbers agree; so are its AU thresholds."""
    import pandas as pd

    path = Path(predictions_csv)
    if not path.is_file():
        raise EvalError(f"{path}: predictions file not found")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if df.empty:
        raise EvalError(f"{path}: no predictions")
    sibling = path.with_name("metrics.json")
    meta = json.loads(sibling.read_text(encoding="utf-8")) if sibling.is_file() else {}
    if restrict_to is None:
        restrict_to = meta.get("restricted_to")
    au_names = [c[5:] for c in df.columns if c.startswith("true_") and c[5:] not in ("label", "valence", "arousal")]
    labels = [c[2:] for c in df.columns if c.startswith("p_") and c[2:] not in au_names]
    if not labels:
        raise EvalError(f"{path}: no p_<label> columns")
    true = df["true_label"].fillna("").astype(str)
    y = np.array([labels.index(t) if t else -1 for t in true], np.int64)
    kwargs: dict[str, Any] = {}
    if au_names:
        # The model's per-AU thresholds, as the sibling metrics.json recorded them (none: 0.5).
        kwargs = dict(aus_true=df[[f"true_{a}" for a in au_names]].to_numpy(np.float64),
                      aus_prob=df[[f"p_{a}" for a in au_names]].to_numpy(np.float64), au_names=au_names,
                      au_thresholds=(meta.get("action_units") or {}).get("thresholds"))
    return compute_metrics(labels, y, df[[f"p_{x}" for x in labels]].to_numpy(np.float64),
                           df[["true_valence", "true_arousal"]].to_numpy(np.float64),
                           df[["pred_valence", "pred_arousal"]].to_numpy(np.float64),
                           dataset=dataset or meta.get("dataset", ""), model=model or meta.get("model", ""),
                           restrict_to=restrict_to, bootstrap=bootstrap, **kwargs)


# What an eval folder holds: another eval's results, replaced only when asked (--overwrite).
EVAL_OUTPUTS = ("metrics.json", "predictions.csv", "report.md")


def check_output_dir(out: str | Path, overwrite: bool = False) -> None:
    """Refuse an -o that is a training run's own folder (eval would overwrite the
    run's validation metrics.json and its plots with test-split figures, --overwrite
    or not), and an earlier eval's folder unless `overwrite`."""
    out = Path(out)
    if (out / "metrics.json").is_file() and any((out / n).is_file() for n in ("last.pt", "history.csv")):
        raise EvalError(f"-o {out}: that is a training run's folder, and eval would overwrite its own "
                        f"metrics.json; write into a sub-folder, e.g. -o {out / 'eval_test'}")
    if out.exists() and not out.is_dir():
        raise EvalError(f"-o {out}: is a file, not a folder; choose another -o")
    held = [n for n in EVAL_OUTPUTS if (out / n).exists()]
    if held and not overwrite:
        raise EvalError(f"-o {out}: already holds an evaluation ({', '.join(held)}); pass --overwrite to "
                        "replace it or choose another -o")


def evaluate_cli(args: Any) -> dict:
    """`python -m train eval` (argparse namespace from train.__main__)."""
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise EvalError(f"--limit {limit}: give at least 1 image, or leave it out for all")
    overwrite = bool(getattr(args, "overwrite", False))
    check_output_dir(args.out, overwrite)
    if overwrite and any((Path(args.out) / n).exists() for n in EVAL_OUTPUTS):
        log.warning("-o %s: replacing the evaluation there (--overwrite)", args.out)
    metrics = evaluate(args.model, args.data, args.out, split=getattr(args, "split", "test"),
                       batch_size=getattr(args, "batch_size", 64), limit=getattr(args, "limit", None),
                       run_dir=getattr(args, "run_dir", None), tta=bool(getattr(args, "tta", False)),
                       face_model=getattr(args, "face_model", None),
                       blendshapes=not getattr(args, "no_blendshapes", False),
                       source=getattr(args, "source", None))
    expr = metrics.get("expression") or {}
    parts = [f"{metrics['dataset']}: n={metrics['n']}"]
    if expr:
        parts.append(f"accuracy {expr['accuracy']:.3f}, macro-F1 {expr['macro_f1']:.3f}, "
                     f"weighted F1 {expr['weighted_f1']:.3f}")
    aus = metrics.get("action_units") or {}
    if aus:
        parts.append(f"AUs micro-F1 {aus['f1_micro']:.3f}, macro-F1 {aus['f1_macro']:.3f}, "
                     f"binary accuracy {aus['binary_accuracy']:.3f}, mAP {aus['map']:.3f}")
    for name in ("valence", "arousal"):
        if metrics.get(name):
            ccc = metrics[name]["ccc"]
            parts.append(f"{name} CCC {ccc:.3f}" if ccc is not None else f"{name} CCC –")
    print("; ".join(parts) + f" → {args.out}")
    if metrics.get("note"):
        print(f"note: {metrics['note']}")
    return metrics

