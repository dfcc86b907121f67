"""Checkpoints: plain dicts of tensors and built-in types, written atomically
and read with `torch.load(weights_only=True)` — never arbitrary pickles.

Keys: `state_dict`, `spec` (affect.spec.ModelSpec as a dict), `model_args`
(the `build_model` arguments that rebuild the architecture), `config`,
`epoch`, `metrics`, and for resuming `optimizer`, `scheduler`, `history`,
`rng_torch` (torch.get_rng_state()), `elapsed`.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from affect.errors import first_line
from affect.files import atomic_write_bytes
from affect.spec import ModelSpec, SpecError
from train.models import AffectModel, ModelError, build_model, drop_imagenet_classifier

log = logging.getLogger("train")

LAST = "last.pt"  # the resume point, written every epoch
PREVIOUS = "last.prev.pt"  # the one before: what a resume falls back to when last.pt is damaged or missing
BEST = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or not one of ours."""


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the half-written checkpoint files a kill mid-save leaves behind
    (affect.files.atomic_write_bytes writes `.<stem>.<random>.partial<suffix>` beside the target)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    removed = []
    for name in (LAST, PREVIOUS, BEST):
        stem, suffix = os.path.splitext(name)
        # affect.files.PendingFile's `.<stem>.<random>.partial<suffix>`, and older `<name>XXXX.tmp` names
        for tmp in [*run_dir.glob(f".{stem}.*.partial{suffix}"), *run_dir.glob(f"{name}*.tmp")]:
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    if removed:
        log.warning("%s: removed %d unfinished checkpoint file(s) a killed run left: %s", run_dir, len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def save_resume_checkpoint(run_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """last.pt, keeping the previous one as last.prev.pt: a kill (or a bad disk)
    that damages the new file still leaves a resume point one epoch back."""
    run_dir = Path(run_dir)
    last = run_dir / LAST
    if last.is_file():
        os.replace(last, run_dir / PREVIOUS)
    return save_checkpoint(last, **kwargs)


def has_resume_point(run_dir: str | os.PathLike) -> bool:
    return any((Path(run_dir) / name).is_file() for name in (LAST, PREVIOUS))


def load_resume_state(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The newest readable resume checkpoint (last.pt, else last.prev.pt), with a
    warning naming what was skipped and why; CheckpointError when none is readable."""
    run_dir = Path(run_dir)
    problems = []
    for name in (LAST, PREVIOUS):  # newest first: last.prev.pt is always the epoch before last.pt
        path = run_dir / name
        if not path.is_file():
            if name == LAST:
                problems.append(f"{path} is missing")
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if "optimizer" not in state:
            problems.append(f"{path}: no optimizer state to resume from")
            continue
        if problems:
            log.warning("%s; resuming from %s (epoch %d) instead", "; ".join(problems), path,
                        int(state.get("epoch", 0)))
        return state, path
    if not any((run_dir / n).exists() for n in (LAST, PREVIOUS)):
        raise CheckpointError(f"{run_dir / LAST}: nothing to resume from")
    raise CheckpointError(f"{run_dir}: no readable checkpoint to resume from ({'; '.join(problems)})")


def spec_for(model: AffectModel, labels: list[str], trained_on: str = "",
             au_names: list[str] | None = None) -> ModelSpec:
    return ModelSpec(labels=list(labels), input_size=int(model.input_size), mean=list(model.mean),
                     std=list(model.std), backbone=model.name, trained_on=trained_on,
                     au_names=list(au_names or []),
                     num_landmarks=(model.landmarks.out_features // 2) if model.landmarks is not None else 0,
                     blendshapes=list(model.blendshape_names))


def model_args(model: AffectModel, hidden: int, dropout: float) -> dict[str, Any]:
    return {
        "backbone": model.name, "num_classes": model.expression.out_features, "hidden": hidden,
        "dropout": dropout, "num_landmarks": (model.landmarks.out_features // 2) if model.landmarks is not None else 0,
        "num_aus": model.action_units.out_features if model.action_units is not None else 0,
        "input_size": int(model.input_size), "blendshapes": list(model.blendshape_names),
        **({"blendshape_standardise": True} if model.blendshapes is not None and model.blendshapes.standardise
           else {}),
    }


def save_checkpoint(path: str | os.PathLike, *, model: AffectModel, spec: ModelSpec, model_args: dict,
                    config: dict | None = None, epoch: int = 0, metrics: dict | None = None,
                    **extra: Any) -> Path:
    """Write atomically: a kill mid-write leaves the previous file intact."""
    path = Path(path)
    payload = {
        "state_dict": model.state_dict(), "spec": spec.to_dict(), "model_args": dict(model_args),
        "config": config or {}, "epoch": int(epoch), "metrics": metrics or {},
        "format": "affectcam-checkpoint-1", **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle
        raise CheckpointError(f"{path}: not a readable affectcam checkpoint ({first_line(exc)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "spec" not in ckpt:
        raise CheckpointError(f"{path}: not an affectcam checkpoint (no state_dict/spec); "
                              "train one with `python -m train fit`")
    return ckpt


def model_from_checkpoint(path: str | os.PathLike, pretrained: str | None = "none"
                          ) -> tuple[AffectModel, ModelSpec, dict[str, Any]]:
    """Rebuild the architecture from the checkpoint and load its weights (eval mode)."""
    ckpt = load_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(ckpt["spec"])
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    args = dict(ckpt.get("model_args") or {})
    if "backbone" not in args:
        raise CheckpointError(f"{path}: checkpoint lacks model_args.backbone")
    try:
        model = build_model(pretrained=pretrained, **args)
        model.mean, model.std = tuple(spec.mean), tuple(spec.std)
        model.load_state_dict(drop_imagenet_classifier(ckpt["state_dict"]), strict=True)
    except ModelError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit a {args['backbone']} model "
                              f"({first_line(exc)})") from None
    return model.eval(), spec, ckpt
