"""The PyTorch side that the other rooms reach by name: `inference.backends`
names this module ("train.torch_backend:TorchBackend", `torch_backend_module()`)
and imports it only when a checkpoint is chosen, so `realtime`, `export` and the
dashboard import nothing from `train`.

- `TorchBackend`: a training checkpoint run through `inference.Backend`'s interface.
- `model_for_export(checkpoints, blendshape_fusion, face_model)`: the PyTorch model the
  ONNX exporter traces — one checkpoint's, the mean of several (`AffectEnsemble`), with
  the blendshape classifier fused in on request (`train.blendshape_fusion`).
Every failure is a one-line `BackendError` naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from affect.spec import SpecError
from inference.backends import Backend, BackendError
from train.checkpoint import CheckpointError, model_from_checkpoint

log = logging.getLogger("train")


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None):
        path = Path(path)
        try:
            model, spec, self.checkpoint = model_from_checkpoint(path)
        except SpecError:
            raise
        except ValueError as exc:  # CheckpointError is a ValueError
            raise BackendError(str(exc)) from None
        super().__init__(path, spec)
        if threads:
            torch.set_num_threads(int(threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()

    def _run(self, batch: np.ndarray, blendshapes: np.ndarray | None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if blendshapes is None:
                out = self.model(x)
            else:
                out = self.model(x, torch.from_numpy(blendshapes).to(self.device))
        return {n: out[n].float().cpu().numpy() for n in self.output_names if n in out}

    def close(self) -> None:
        self.model = None

    def describe(self) -> str:
        return f"torch[{self.device}]:{self.path.name}"


# --- what the ONNX exporter traces ---------------------------------------------------------------

# The spec fields that make two models interchangeable downstream.
CONTRACT_FIELDS = ("labels", "input_size", "mean", "std", "crop", "num_landmarks", "au_names", "blendshapes")


def _load(checkpoint: str | Path):
    try:
        return model_from_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise BackendError(str(exc)) from None


def _load_ensemble(checkpoints: list[Path]):
    """One checkpoint's model, or the mean of several (AffectEnsemble) under the first's spec."""
    from train.models import AffectEnsemble

    loaded = [_load(c) for c in checkpoints]
    model, spec, _ = loaded[0]
    if len(loaded) == 1:
        return model, spec
    for path, (_, other, _) in zip(checkpoints[1:], loaded[1:]):
        for key in CONTRACT_FIELDS:
            if getattr(other, key) != getattr(spec, key):
                raise BackendError(f"{path}: {key} {getattr(other, key)!r} differs from {checkpoints[0]}'s "
                                   f"{getattr(spec, key)!r}; an ensemble's members must share the model contract")
    backbones = sorted({s.backbone for _, s, _ in loaded})
    # The mean's logits are not any member's: its temperature is fitted afresh (`export calibrate`).
    spec = replace(spec, backbone=f"mean of {len(loaded)} × {'+'.join(backbones)}", temperature=1.0, au_thresholds=[],
                   trained_on=" | ".join(dict.fromkeys(s.trained_on for _, s, _ in loaded)))
    return AffectEnsemble([m for m, _, _ in loaded]).eval(), spec


def _with_blendshape_fusion(model, spec, checkpoint: Path, weight: float, face_model):
    from train.blendshape_fusion import (
        BlendshapeFusion,
        FusionError,
        fit_blendshape_classifier,
        run_training_faces,
    )

    if not spec.blendshapes:
        raise BackendError(f"{checkpoint}: --blendshape-fusion needs a model that takes blendshapes "
                           "(train it with model.blendshapes: true)")
    try:
        scores, labels, n_classes = run_training_faces(checkpoint.parent, spec.blendshapes, face_model)
        fused = BlendshapeFusion(model, fit_blendshape_classifier(scores, labels, n_classes), weight).eval()
    except FusionError as exc:
        raise BackendError(f"{checkpoint}: {exc}") from None
    log.info("%s: blendshape classifier fitted on %d training faces, fusion weight %.2f", checkpoint,
             int(np.isfinite(scores).all(axis=1).sum()), weight)
    return fused, replace(spec, backbone=f"{spec.backbone} + blendshape classifier (weight {weight:g})")


def model_for_export(checkpoints: list[Path], blendshape_fusion: float | None = None, face_model=None):
    """(PyTorch model, ModelSpec) to trace: the checkpoints' mean (one: its own model), with a
    blendshape classifier fitted on the first checkpoint's run fused in when `blendshape_fusion`
    (a weight in (0, 1)) is given."""
    checkpoints = [Path(c) for c in checkpoints]
    model, spec = _load_ensemble(checkpoints)
    if blendshape_fusion is not None:
        model, spec = _with_blendshape_fusion(model, spec, checkpoints[0], blendshape_fusion, face_model)
    return model, spec
