"""`python -m export calibrate MODEL.onnx --run-dir RUN`: fit the expression head's
temperature on the run's validation parts and write a copy of the file whose
`affect.temperature` metadata holds it (the graph is unchanged: its `expression`
output stays the logits, and every reader divides them by T before the softmax,
`affect.preprocess.expression_probabilities`).

The faces are read exactly as `python -m train eval MODEL --run-dir RUN --split val
--source PART` reads them (that function runs, once per part), so the temperature is
fitted on what eval measures and the camera then shows. Only the validation split:
held-out parts are never calibrated on. Each part weighs equally
(`affect.calibration.fit_temperature`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from affect.calibration import CalibrationPart, fit_temperature, part_nll
from affect.metrics import expected_calibration_error
from affect.preprocess import expression_probabilities
from export.common import ExportError, atomic_output, load_onnx, set_metadata, spec_of

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


def _val_sources(run_dir: Path) -> list[str]:
    """Names of the run's datasets that have faces in its validation split."""
    from train.evaluate import read_run

    _, splits, infos = read_run(run_dir)
    wanted = set(splits.get(SPLIT, []))
    return [i.name for i in infos if any(s.path in wanted for s in i.samples)]


def _part_from_eval(folder: Path, name: str) -> CalibrationPart:
    """A part's log-probabilities, labels and class columns from a `train eval` folder."""
    import pandas as pd

    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    df = pd.read_csv(folder / "predictions.csv", keep_default_na=False, na_values=[""])
    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    probs = df[[f"p_{x}" for x in labels]].to_numpy(np.float64)
    true = df["true_label"].fillna("").astype(str)
    y = np.array([labels.index(t) if t else -1 for t in true], np.int64)
    restricted = metrics.get("restricted_to")
    columns = None if not restricted else [labels.index(x) for x in restricted]
    # log p = logits / T0 − logsumexp: the logits at the file's temperature, up to a per-row constant.
    return CalibrationPart(name, np.log(np.maximum(probs, 1e-300)), y, columns)


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
    `eval_dir` keeps the `train eval` folder of each part (before calibration)."""
    import onnx

    from train.evaluate import EvalError, evaluate

    model, run_dir = Path(model), Path(run_dir)
    if model.suffix != ".onnx":
        raise ExportError(f"{model}: calibrate writes ONNX metadata; give a .onnx file (export a checkpoint first)")
    proto = load_onnx(model)
    spec = spec_of(proto, str(model))
    out = Path(out) if out is not None else model.with_name(model.name.removesuffix(".onnx") + ".calibrated.onnx")
    try:
        known = _val_sources(run_dir)
    except EvalError as exc:
        raise ExportError(str(exc)) from None
    names = list(sources) if sources else known
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ExportError(f"{run_dir}: no {SPLIT} part named {unknown or names}; its {SPLIT} parts are {known}")
    parts: list[CalibrationPart] = []
    with tempfile.TemporaryDirectory(prefix="affectcam-calibrate-") as tmp:
        root = Path(eval_dir) if eval_dir is not None else Path(tmp)
        for name in names:
            folder = root / f"{SPLIT}_{name}"
            try:
                evaluate(model, None, folder, split=SPLIT, run_dir=run_dir, source=name, batch_size=batch_size,
                         bootstrap=0, n_examples=0)
            except EvalError as exc:
                raise ExportError(f"{model}: {exc}") from None
            parts.append(_part_from_eval(folder, name))
    scale = fit_temperature(parts)  # on log-probabilities at the file's own temperature
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
