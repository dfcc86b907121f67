"""Checkpoints: plain dicts of tensors and built-in types, written atomically
and read with `torch.load(weights_only=True)` — never arbitrary pickles.

Keys: `state_dict`, `spec` (affect.spec.ModelSpec as a dict), `model_args`
(the `build_model` arguments that rebuild the architecture), `config`,
`epoch`, `metrics`, and for resuming `optimizer`, `scheduler`, `history`,
`rng_torch` (torch.get_rng_state()), `elapsed`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from affect.files import atomic_write_bytes
from affect.spec import ModelSpec, SpecError
from train.models import AffectModel, ModelError, build_model, drop_imagenet_classifier


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or not one of ours."""


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
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable affectcam checkpoint ({first})") from None
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
                              f"({str(exc).splitlines()[0][:120]})") from None
    return model.eval(), spec, ckpt
