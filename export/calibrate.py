"""`python -m export calibrate MODEL.onnx --run-dir RUN`: fit the expression head's
temperature on the run's validation parts and write a copy of the file whose
`affect.temperature` metadata holds it (the graph is unchanged: its `expression`
output stays the logits, and every reader divides them by T before the softmax,
`affect.preprocess.expression_probabilities`).

The faces are read as `python -m train eval MODEL --run-dir RUN --split val --source
PART` reads them, from the same torch-free parts: the run's datasets and splits
(`affect.datasets.runs.read_run`), each face's evaluation crop
(`affect.datasets.crops.eval_crop`), its blendshapes for a model that takes them
(`affect.datasets.blendshapes`, the same cache), the file run by
`inference.create_backend` through the one evaluator's steps (`inference.evaluation`).
So the temperature is fitted on what eval measures and the camera then shows, and
calibrating needs neither torch nor the training code. Only the validation split:
held-out parts are never calibrated on. Each part weighs equally
(`affect.calibration.fit_temperature`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from affect.calibration import CalibrationPart, fit_temperature, part_nll
from affect.datasets.crops import eval_crop, read_image
from affect.datasets.records import DataError, DatasetInfo, Sample
from affect.datasets.runs import read_run
from affect.files import atomic_write_json, atomic_write_text
from affect.images import UnreadableImage
from affect.metrics import MetricsError, expected_calibration_error
from affect.preprocess import expression_probabilities, normalise
from affect.spec import ModelSpec
from export.common import ExportError, atomic_output, load_onnx, set_metadata, spec_of
from inference.backends import BackendError, create_backend
from inference.evaluation import (
    Targets,
    collect_samples,
    dataset_metrics,
    non_finite,
    predict,
    predictions_csv,
    shared_classes,
)

log = logging.getLogger(__name__)

SPLIT = "val"  # the only split a temperature may be fitted on


@dataclass
class PartCalibration:
    name: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float


@dataclass
class CalibrationResult:
    model: Path
    out: Path
    temperature_before: float
    temperature: float
    parts: list[PartCalibration] = field(default_factory=list)

    def summary(self) -> str:
        rows = "; ".join(f"{p.name} ({p.n}): NLL {p.nll_before:.3f} → {p.nll_after:.3f}, "
                         f"ECE {p.ece_before:.3f} → {p.ece_after:.3f}" for p in self.parts)
        return (f"temperature {self.temperature:.4f} (was {self.temperature_before:g}) fitted on the {SPLIT} "
                f"parts: {rows}")


def _val_parts(run_dir: Path) -> list[tuple[DatasetInfo, list[Sample]]]:
    """The run's datasets that have faces in its validation split, each with those faces."""
    try:
        _, splits, infos = read_run(run_dir)
    except DataError as exc:
        raise ExportError(str(exc)) from None
    wanted = set(splits.get(SPLIT, []))
    parts = [(info, [s for s in info.samples if s.path in wanted]) for info in infos]
    return [(info, samples) for info, samples in parts if samples]


def _batches(samples: Sequence[Sample], spec: ModelSpec, batch_size: int, skipped: list[str]
             ) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """(images NCHW, blendshape rows or None, sample indices) batches: each face's evaluation
    crop normalised as `train eval`'s loader does; unreadable images are left out (in `skipped`)."""
    width = len(spec.blendshapes)
    for start in range(0, len(samples), batch_size):
        crops, rows, index = [], [], []
        for i in range(start, min(start + batch_size, len(samples))):
            sample = samples[i]
            try:
                image = read_image(sample)
            except UnreadableImage as exc:
                log.warning("skipping %s", exc)
                skipped.append(sample.path)
                continue
            crops.append(eval_crop(image, sample, spec.input_size)[0])
            index.append(i)
            if width:
                rows.append(sample.blendshapes if sample.blendshapes is not None else np.full(width, np.nan))
        if crops:
            yield (normalise(np.stack(crops), spec.mean, spec.std),
                   np.asarray(rows, np.float32) if width else None, np.asarray(index, np.int64))


def _attach_blendshapes(samples: list[Sample], spec: ModelSpec, model: Path) -> str:
    """Each face's blendshapes from MediaPipe's landmarker on its crop (cached, as `train eval`)."""
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.face_model import FaceModelError, resolve_face_model

    try:
        bundle = resolve_face_model(None)
    except FaceModelError as exc:
        raise ExportError(f"{model}: the model takes blendshapes, which need the face model: {exc}") from None
    try:
        counts = attach_blendshapes(samples, list(spec.blendshapes), bundle)
    except DataError as exc:
        raise ExportError(f"{model}: {exc}") from None
    log.info("blendshapes: faces found in %d of %d samples", counts["found"], counts["faces"])
    return f"landmarker found {counts['found']} of {counts['faces']} faces"


@dataclass
class _PartRun:
    """One validation part run through the model: the faces predicted, in order."""
    name: str
    samples: list[Sample]
    targets: Targets  # of the predicted faces, aligned with `raw`
    raw: dict[str, np.ndarray]  # inference.evaluation.predict: index, logits, va[, aus]
    restrict: list[str] | None
    skipped: int
    blendshapes: str | None  # how the blendshapes were read (train eval's metrics.json note)


def _run_part(backend, spec: ModelSpec, info: DatasetInfo, samples: list[Sample], model: Path,
              batch_size: int) -> _PartRun:
    """Collect and predict one part (`train eval --split val --source PART`'s steps)."""
    labels = list(spec.labels)
    restrict = shared_classes(labels, info.labels)
    if restrict == []:
        raise ExportError(f"{model}: {info.name}: the model's labels {labels} share no class with the "
                          f"dataset's {list(info.labels)}")
    targets = collect_samples(samples, info.label_set, labels, list(spec.au_names))
    if (targets.expression < 0).all() and targets.lacking:
        raise ExportError(f"{model}: {info.name}: the model's labels {labels} share no class with the "
                          f"dataset's {sorted(targets.lacking)}")
    note = _attach_blendshapes(samples, spec, model) if spec.blendshapes else None
    skipped: list[str] = []
    raw = predict(backend.predict, _batches(samples, spec, batch_size, skipped), False, spec.blendshapes)
    if "index" not in raw:
        raise ExportError(f"{model}: {info.name}: no readable images in the {SPLIT} part ({len(skipped)} unreadable)")
    broken = non_finite(raw)
    if broken:
        raise ExportError(f"{model}: the model produced {broken} of {info.name}")
    return _PartRun(info.name, samples, targets.take(raw["index"]), raw, restrict, len(skipped), note)


def _write_part(folder: Path, part: _PartRun, spec: ModelSpec, model: Path) -> None:
    """The part's predictions.csv and metrics.json as `train eval` writes them (at the file's
    own temperature: before calibration)."""
    name = f"{part.name}:{SPLIT}"
    try:
        metrics = dataset_metrics(part.targets, part.raw, spec, restrict_to=part.restrict, dataset=name,
                                  model=str(model), skipped=part.skipped, blendshapes=part.blendshapes)
    except MetricsError as exc:
        raise ExportError(f"{model}: {name}: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "predictions.csv", predictions_csv(
        [part.samples[i].path for i in part.raw["index"]], spec.labels, part.targets, part.raw,
        temperature=spec.temperature, restrict_to=part.restrict, au_names=spec.au_names,
        aus="action_units" in metrics))
    atomic_write_json(folder / "metrics.json", metrics)


def _calibration_part(part: _PartRun, spec: ModelSpec) -> CalibrationPart:
    """The part's logits at the file's own temperature (logits / T0), labels and class columns."""
    labels = list(spec.labels)
    columns = None if not part.restrict else [labels.index(x) for x in part.restrict]
    return CalibrationPart(part.name, part.raw["logits"] / float(spec.temperature), part.targets.expression,
                           columns)


def _ece(part: CalibrationPart, temperature: float) -> float:
    """ECE over the part's own classes (the softmax over them: what eval's restriction gives)."""
    logits, y = part.restricted()
    return expected_calibration_error(y, expression_probabilities(logits, temperature))


def calibrate_onnx(model: str | os.PathLike, run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                   sources: list[str] | None = None, eval_dir: str | os.PathLike | None = None,
                   batch_size: int = 64) -> CalibrationResult:
    """Fit `model`'s temperature on `run_dir`'s validation parts (`sources`: some of
    them by name; default all) and write the file with it to `out` (default
    MODEL.calibrated.onnx next to it; `out` may be `model` itself: replaced atomically).
    `eval_dir` keeps each part's predictions.csv and metrics.json, as `train eval` writes
    them, in `EVAL_DIR/val_<part>/` (before calibration)."""
    import onnx

    model, run_dir = Path(model), Path(run_dir)
    if model.suffix != ".onnx":
        raise ExportError(f"{model}: calibrate writes ONNX metadata; give a .onnx file (export a checkpoint first)")
    proto = load_onnx(model)
    spec = spec_of(proto, str(model))
    out = Path(out) if out is not None else model.with_name(model.name.removesuffix(".onnx") + ".calibrated.onnx")
    val_parts = _val_parts(run_dir)
    known = [info.name for info, _ in val_parts]
    names = list(sources) if sources else known
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ExportError(f"{run_dir}: no {SPLIT} part named {unknown or names}; its {SPLIT} parts are {known}")
    runs: list[_PartRun] = []
    try:
        with create_backend(str(model)) as backend:
            for info, samples in val_parts:
                if info.name in names:
                    runs.append(_run_part(backend, spec, info, samples, model, batch_size))
    except BackendError as exc:  # its message names the file
        raise ExportError(str(exc)) from None
    if eval_dir is not None:
        for part in runs:
            _write_part(Path(eval_dir) / f"{SPLIT}_{part.name}", part, spec, model)
    parts = [_calibration_part(part, spec) for part in sorted(runs, key=lambda r: names.index(r.name))]
    scale = fit_temperature(parts)  # on logits at the file's own temperature
    result = CalibrationResult(model, out, float(spec.temperature), float(spec.temperature) * scale)
    for part in parts:
        result.parts.append(PartCalibration(part.name, int((part.y >= 0).sum()), part_nll(part, 1.0),
                                            part_nll(part, scale), _ece(part, 1.0), _ece(part, scale)))
    set_metadata(proto, replace(spec, temperature=result.temperature))
    with atomic_output(out) as tmp_out:
        onnx.save(proto, str(tmp_out))
    log.info("%s: %s", model, result.summary())
    print(f"wrote {out} (affect.temperature {result.temperature:.4f})")
    return result
