"""`python -m train au-thresholds`: per-AU decision thresholds for a model's AU head, chosen on
its training run's VALIDATION part and stored with the model.

A head trained with weighted positives (`loss.au_pos_weight`) is shifted towards "present":
at 0.5 it over-calls the AUs whose positives weighed most. One threshold per AU, chosen on the
validation subjects (`affect.aus.choose_au_thresholds`: the one that maximises that AU's F1 by
default; 0.5 where the AU has too few validation positives), puts its decisions where the
figure that counts is best. The thresholds go into the checkpoint's spec
(`ModelSpec.au_thresholds`; the ONNX export carries them as `affect.au_thresholds`), and every
place that calls an AU "active" reads them: `train eval`'s binary metrics, the camera's overlay,
the recording's AU thresholds file and so the dashboard's AU panel and the corpus table. The
`action_units` probabilities themselves stay raw. The test part is never read here.

    python -m train au-thresholds RUN/checkpoint.pt                 # rule f1, RUN's val part
    python -m train au-thresholds RUN/checkpoint.pt --rule balanced_accuracy

`python -m train fit` runs this at the end of a run whose config says `train.au_thresholds`.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from affect.aus import MIN_THRESHOLD_FACES, THRESHOLD_RULES, choose_au_thresholds
from affect.files import atomic_write_bytes, atomic_write_json

THRESHOLDS_FILE = "au_thresholds.json"  # beside the checkpoint: what was chosen, how and on what


class AuThresholdError(ValueError):
    """Thresholds that cannot be chosen (no AU head, no annotated validation faces); one line."""


def val_au_predictions(checkpoint: Path, run_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """The model's AU probabilities on its run's validation part, through the evaluator's own
    steps (`train.evaluate`: the same crop, normalisation and backend as `train eval`):
    (targets [N, A] with NaN = not annotated, probabilities [N, A], AU names, dataset name)."""
    from affect.predict import au_probabilities
    from train.evaluate import collect_set, eval_loader, open_backend, predict

    with open_backend(checkpoint) as backend:
        spec = backend.spec
        if not spec.au_names:
            raise AuThresholdError(f"{checkpoint}: the model has no action-unit head; nothing to threshold")
        if spec.blendshapes:
            raise AuThresholdError(f"{checkpoint}: a model that takes blendshapes is not supported here")
        evalset = collect_set(checkpoint, spec, None, "val", run_dir, None, None)
        raw = predict(backend, eval_loader(evalset, spec, False, 64, 0), False, checkpoint)
    targets = evalset.targets.take(raw["index"]).aus
    if "aus" not in raw or targets is None or not np.isfinite(targets).any():
        raise AuThresholdError(f"{evalset.name}: no AU-annotated validation faces to choose thresholds on")
    return targets, au_probabilities(raw["aus"]), list(spec.au_names), evalset.name


def store_thresholds(checkpoint: Path, thresholds: list[float], out: Path | None = None) -> Path:
    """Write the checkpoint (to `out`, default in place, atomically) with `thresholds` in its spec."""
    import torch

    from affect.spec import ModelSpec
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    spec = ModelSpec.from_dict({**ckpt["spec"], "au_thresholds": [float(v) for v in thresholds]})
    ckpt["spec"] = spec.to_dict()
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    target = Path(out) if out else Path(checkpoint)
    atomic_write_bytes(target, buffer.getvalue())
    return target


def choose_for_run(checkpoint: str | os.PathLike, rule: str = "f1", run_dir: str | os.PathLike | None = None,
                   min_faces: int = MIN_THRESHOLD_FACES, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Choose per-AU thresholds on the run's validation part, store them in the checkpoint
    (`out`, default in place) and write `au_thresholds.json` beside it (the rule, the
    thresholds, why each, and the validation figures at 0.5 and at the thresholds — the latter
    on the faces they were chosen on, so optimistic). Returns that record."""
    from affect.metrics import au_metrics

    checkpoint = Path(checkpoint)
    if rule not in THRESHOLD_RULES:
        raise AuThresholdError(f"AU threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    if not checkpoint.is_file():
        raise AuThresholdError(f"{checkpoint}: checkpoint not found")
    if checkpoint.suffix != ".pt":
        raise AuThresholdError(f"{checkpoint}: give the run's checkpoint.pt (its ONNX export carries the thresholds "
                               "once exported again)")
    targets, probs, names, dataset = val_au_predictions(checkpoint, Path(run_dir) if run_dir else None)
    thresholds, sources = choose_au_thresholds(targets, probs, rule, min_faces)
    before = au_metrics(names, targets, probs, 0.5)
    after = au_metrics(names, targets, probs, thresholds)
    written = store_thresholds(checkpoint, thresholds, Path(out) if out else None)

    def figures(m: dict) -> dict[str, float]:
        return {k: round(float(m[k]), 4) for k in ("binary_accuracy", "f1_macro", "f1_micro")}

    record = {
        "checkpoint": str(written), "rule": rule, "min_faces": int(min_faces), "chosen_on": dataset,
        "n_faces": int(len(targets)),
        "thresholds": dict(zip(names, thresholds)), "source": dict(zip(names, sources)),
        "val_at_0.5": figures(before), "val_at_thresholds": figures(after),
        "note": "val_at_thresholds is measured on the faces the thresholds were chosen on (optimistic); "
                "judge them on held-out faces with `python -m train eval`",
    }
    atomic_write_json(written.parent / THRESHOLDS_FILE, record)
    return record


def summary_line(record: dict[str, Any]) -> str:
    b, a = record["val_at_0.5"], record["val_at_thresholds"]
    own = sum(1 for s in record["source"].values() if not s.startswith("default"))
    return (f"AU thresholds ({record['rule']}, {own} of {len(record['thresholds'])} AUs their own, the rest 0.5) "
            f"chosen on {record['chosen_on']} ({record['n_faces']} faces): binary accuracy "
            f"{b['binary_accuracy']:.3f} → {a['binary_accuracy']:.3f}, macro-F1 {b['f1_macro']:.3f} → "
            f"{a['f1_macro']:.3f} on those faces → {record['checkpoint']}, "
            f"{Path(record['checkpoint']).parent / THRESHOLDS_FILE}")


def add_parser(sub) -> None:
    p = sub.add_parser("au-thresholds", help="choose per-AU decision thresholds on a run's validation part "
                                             "and store them in its checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="the run's checkpoint.pt")
    p.add_argument("--rule", default="f1", choices=THRESHOLD_RULES,
                   help="per AU, the threshold that maximises this on the validation faces (default f1)")
    p.add_argument("--min-faces", type=int, default=MIN_THRESHOLD_FACES,
                   help=f"fewer validation positives (or negatives) than this: keep 0.5 (default {MIN_THRESHOLD_FACES})")
    p.add_argument("--run-dir", help="the training run (default: the checkpoint's folder)")
    p.add_argument("-o", "--out", help="write the checkpoint with thresholds here (default: in place)")


def run(args) -> int:
    record = choose_for_run(args.checkpoint, args.rule, args.run_dir, args.min_faces, args.out)
    print(summary_line(record))
    return 0
