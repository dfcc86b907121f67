"""The fit loop, as plain functions (after torchvision's reference train.py):
`fit(cfg)` → `train_one_epoch(...)` / `predict_loader(...)` + `metrics_from_predictions(...)`.

A run directory holds: config.yaml (resolved), checkpoint.pt (best),
last.pt (resume point, written every epoch), history.csv, tb/ (TensorBoard),
metrics.json (validation split), curves.png, splits.json and run.json.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from affect.blendshapes import mirror_order
from affect.files import atomic_write_json, atomic_write_text
from affect.metrics import compute_metrics
from affect.predict import au_probabilities, tta_average
from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_LANDMARKS, OUTPUT_VA
from train import data as tdata
from train.checkpoint import (
    has_resume_point,
    load_resume_state,
    model_args,
    remove_stale_temporaries,
    save_checkpoint,
    save_resume_checkpoint,
    spec_for,
)
from train.config import dump_config, resume_config
from train.distill import distillation_loss
from train.losses import au_loss, landmark_loss, masked_cross_entropy, va_loss
from train.models import (
    AffectModel, ModelError, backbone_blocks, build_model, count_parameters, drop_imagenet_classifier,
)

log = logging.getLogger("train")


class TrainError(ValueError):
    """A run that cannot start: bad data, empty split, unknown option."""


# --- distributed helpers (torchrun sets WORLD_SIZE/RANK/LOCAL_RANK) ---------------------------------

def _dist_setup(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# --- data ----------------------------------------------------------------------------------------------

@dataclass
class Part:
    """One dataset's share of one split, already in the run's label order.

    `draw_weight` is this share's part of its dataset's sampling weight, fixed
    before any `train_fraction` thinning, so a thinned dataset is still drawn
    as often (from fewer distinct faces). `train_fraction` is what to keep of
    it when it is trained on (1 = all)."""
    samples: list
    class_mask: np.ndarray
    info: Any
    draw_weight: float = 1.0
    train_fraction: float = 1.0
    seed: int = 0
    split: str = "train"
    label_smoothing: float | None = None  # the dataset's own (data.datasets[i].label_smoothing)

    def thinned(self) -> Part:
        """The share to train on: a stratified, seeded `train_fraction` of it."""
        if self.train_fraction >= 1.0:
            return self
        keep = tdata.split_stratified(self.samples, fractions=(self.train_fraction, 1.0 - self.train_fraction),
                                      seed=self.seed)[0]
        return replace(self, samples=list(keep))


@dataclass
class Splits:
    train: list[Part] = field(default_factory=list)
    val: list[Part] = field(default_factory=list)
    test: list[Part] = field(default_factory=list)
    infos: list = field(default_factory=list)
    au_names: list[str] = field(default_factory=list)

    def count(self, split: str) -> int:
        return sum(len(p.samples) for p in getattr(self, split))


def _train_fraction(dcfg: dict) -> float:
    value = dcfg.get("train_fraction", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise TrainError(f"dataset {dcfg.get('root')}: train_fraction must be a number in (0, 1], got {value!r}")
    return float(value)


def _label_smoothing(dcfg: dict) -> float | None:
    value = dcfg.get("label_smoothing")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise TrainError(f"dataset {dcfg.get('root')}: label_smoothing must be a number in [0, 1), got {value!r}")
    return float(value)


def build_splits(cfg: dict) -> Splits:
    """Load every dataset of the config, map it to the run's labels, and
    split each by its role.

    `role: auto` splits the dataset (stratified, or by subject) into
    train/val/test with the configured fractions and seed; `train`, `val`
    or `test` sends the whole dataset to that part (e.g. FER2013 Training /
    PublicTest). The same config and seed always give the same split, so
    `train eval --split test` finds the held-out part again.
    """
    labels = list(cfg["labels"])
    split_cfg = cfg["data"]["split"]
    out = Splits()
    for dcfg in cfg["data"]["datasets"]:
        info = tdata.load_dataset(dcfg)
        out.infos.append(info)
        for name in info.au_names:
            if name not in out.au_names:
                out.au_names.append(name)
    for dcfg, info in zip(cfg["data"]["datasets"], out.infos):
        role = dcfg.get("role", "auto")
        samples = tdata.remap_labels(info.samples, info.label_set, labels)
        if out.au_names:
            samples = tdata.align_aus(samples, info.au_names, out.au_names)
        if not samples:
            raise TrainError(f"{dcfg.get('root')}: no samples with the run's labels {labels}")
        mask = info.class_mask(labels)
        keep = _train_fraction(dcfg)
        if role == "auto":
            fractions = tuple(dcfg.get("fractions") or split_cfg.get("fractions", (0.64, 0.16, 0.20)))
            seed = int(split_cfg.get("seed", cfg["seed"]))
            if split_cfg.get("method", "stratified") == "subject" and any(s.subject for s in samples):
                parts = tdata.split_by_subject(samples, fractions=fractions, seed=seed)
            else:
                parts = tdata.split_stratified(samples, fractions=fractions, seed=seed)
        elif role in ("train", "val", "test"):
            parts = tuple(samples if role == r else [] for r in ("train", "val", "test"))
        else:
            raise TrainError(f"dataset {dcfg.get('root')}: role must be auto/train/val/test, not {role!r}")
        seed = int(split_cfg.get("seed", cfg["seed"]))
        smoothing = _label_smoothing(dcfg)
        for split, part in zip(("train", "val", "test"), parts):
            if part:
                share = Part(list(part), mask, info, draw_weight=float(info.weight) * len(part) / len(info.samples),
                             train_fraction=keep if split in ("train", "val") else 1.0, seed=seed, split=split,
                             label_smoothing=smoothing)
                getattr(out, split).append(share.thinned() if split == "train" else share)
    if not out.train:
        raise TrainError("the training split is empty: check data.datasets roots and roles")
    if not out.val:
        raise TrainError("the validation split is empty: give a dataset role 'auto' or 'val'")
    return out


def make_dataset(parts: list[Part], cfg: dict, size: int, mean, std, au_names: list[str], train: bool,
                 blendshapes: list[str] | tuple[str, ...] = ()):
    """One AffectDataset per dataset part (each keeps its class mask), mixed;
    training items carry the teacher's outputs when `distill.teacher` is set."""
    teacher = train and bool((cfg.get("distill") or {}).get("teacher"))
    aug = tdata.AugmentConfig.from_dict(cfg["data"]["augment"]) if train else None
    dropout = float(cfg["data"].get("blendshape_dropout") or 0.0) if train else 0.0
    return tdata.MixedDataset([
        tdata.AffectDataset(p.samples, size=size, mean=mean, std=std, labels=cfg["labels"], augment=aug,
                            num_landmarks=cfg["model"]["num_landmarks"], au_names=au_names,
                            class_mask=p.class_mask, blendshapes=blendshapes, blendshape_dropout=dropout,
                            teacher=teacher, label_smoothing=p.label_smoothing,
                            cache=_crop_cache(p, cfg, size))
        for p in parts])


def _crop_cache(part: Part, cfg: dict, size: int):
    """The part's decoded crops (train.data.crop_cache) when `data.cache` is on, else None."""
    dcfg = cfg["data"]
    if not dcfg.get("cache"):
        return None
    from affect.files import cache_root
    from train.data.crop_cache import build_crop_cache

    root = dcfg.get("cache_dir") or cache_root("crops")
    return build_crop_cache(part.samples, size, root, f"{part.info.name}-{part.split}", progress=_is_main())


def blendshape_names(mcfg: dict) -> tuple[str, ...]:
    """The blendshape input's names for `model.blendshapes` (true: MediaPipe's 52)."""
    from affect.blendshapes import MEDIAPIPE_BLENDSHAPES

    value = mcfg.get("blendshapes")
    if value in (None, False, "none"):
        return ()
    if value in (True, "mediapipe"):
        return MEDIAPIPE_BLENDSHAPES
    raise TrainError(f"model.blendshapes must be true or false, got {value!r}")


def attach_run_blendshapes(parts: list[Part], cfg: dict, names: tuple[str, ...]) -> None:
    """Compute (or read from the cache) every sample's blendshapes."""
    from affect.face_model import FaceModelError, resolve_face_model
    from train.data.blendshapes import attach_blendshapes

    try:
        face_model = resolve_face_model(cfg["model"].get("face_model"))
    except FaceModelError as exc:
        raise TrainError(f"model.blendshapes needs the MediaPipe face model (--set model.face_model=PATH): {exc}"
                         ) from None
    samples = [s for p in parts for s in p.samples]
    counts = attach_blendshapes(samples, names, face_model, cfg["data"].get("blendshape_cache"),
                                progress=_is_main())
    if _is_main():
        print(f"blendshapes: faces found in {counts['found']} of {counts['faces']} training/validation "
              f"samples ({counts['computed']} computed, the rest from the cache)", flush=True)


def attach_run_teacher(parts: list[Part], cfg: dict, bs_names: tuple[str, ...]) -> None:
    """The teacher's outputs for every training sample (computed once, cached)."""
    from train.distill import DistillError, attach_teacher

    dcfg = cfg["distill"]
    for key in ("weight", "temperature", "va_weight"):
        value = dcfg.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                key == "temperature" and value == 0):
            raise TrainError(f"distill.{key} must be a {'positive' if key == 'temperature' else 'non-negative'} "
                             f"number, got {value!r}")
    try:
        counts = attach_teacher([s for p in parts for s in p.samples], dcfg["teacher"], cfg["labels"],
                                blendshapes=bs_names, cache_dir=dcfg.get("cache"), progress=_is_main())
    except DistillError as exc:
        raise TrainError(f"distill.teacher: {exc}") from None
    if _is_main():
        print(f"distill: teacher {dcfg['teacher']} labelled {counts['faces']} training faces "
              f"({counts['computed']} computed, the rest from the cache)", flush=True)


# --- the loop --------------------------------------------------------------------------------------------

def compute_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: dict,
                 class_weight: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
    lcfg = cfg["loss"]
    parts: dict[str, torch.Tensor] = {}
    if lcfg["expression"]:
        parts["expression"] = lcfg["expression"] * masked_cross_entropy(
            out[OUTPUT_EXPRESSION], batch["expression"], batch.get("class_mask"), class_weight,
            cfg["train"]["label_smoothing"], soft=batch.get("soft"), sample_smoothing=batch.get("smoothing"))
    if lcfg["va"]:
        parts["va"] = lcfg["va"] * va_loss(out[OUTPUT_VA], batch["va"], batch["va_mask"], lcfg["va_loss"])
    if OUTPUT_LANDMARKS in out and lcfg["landmarks"]:
        parts["landmarks"] = lcfg["landmarks"] * landmark_loss(
            out[OUTPUT_LANDMARKS], batch["landmarks"], batch["landmarks_mask"], lcfg["landmark_loss"])
    if OUTPUT_AUS in out and lcfg["aus"]:
        parts["aus"] = lcfg["aus"] * au_loss(out[OUTPUT_AUS], batch["aus"], batch["aus_mask"])
    if "teacher" in batch:
        dcfg = cfg["distill"]
        kl, va = distillation_loss(out[OUTPUT_EXPRESSION], out[OUTPUT_VA], batch["teacher"], batch["va_mask"],
                                   dcfg["temperature"], lcfg["va_loss"])
        parts["distill"] = float(dcfg["weight"]) * kl
        parts["distill_va"] = float(dcfg["va_weight"]) * va
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    head = model.module.head_parameters() if hasattr(model, "module") else model.head_parameters()
    return sum(p.abs().sum() for p in head if p.ndim > 1)


def train_one_epoch(model, loader, optimizer, scheduler_step, cfg, device, epoch, class_weight, scaler,
                    max_steps: int | None, step_offset: int = 0, frozen: bool = False,
                    frozen_blocks: Sequence[nn.Module] = ()) -> dict[str, float]:
    model.train()
    if frozen:  # a frozen backbone also keeps its BatchNorm statistics
        (model.module if hasattr(model, "module") else model).backbone.eval()
    for block in frozen_blocks:  # so do frozen blocks
        block.eval()
    totals: dict[str, float] = {}
    n_batches, n_bad, n_seen = 0, 0, 0
    clip = cfg["train"]["grad_clip"]
    l1 = cfg["train"]["l1"]
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not _is_main(), dynamic_ncols=True)
    for batch in bar:
        n_bad += int(batch.pop("n_bad", 0))
        if not batch.pop("batch_size", 0):
            continue
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, enabled=scaler is not None):
            out = model(batch["image"], batch.get("blendshapes"))
            loss, parts = compute_loss(out, batch, cfg, class_weight)
            if l1:
                loss = loss + l1 * _l1_penalty(model)
        if not torch.isfinite(loss):
            log.warning("non-finite loss at epoch %d step %d: batch skipped", epoch, n_batches)
            optimizer.zero_grad(set_to_none=True)
            continue
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler_step()
        n_batches += 1
        n_seen += batch["image"].shape[0]
        totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
        for k, v in parts.items():
            totals[f"loss_{k}"] = totals.get(f"loss_{k}", 0.0) + v
        bar.set_postfix(loss=f"{totals['loss'] / n_batches:.3f}")
        if max_steps is not None and step_offset + n_batches >= max_steps:
            break
    stats = {k: v / max(n_batches, 1) for k, v in totals.items()}
    stats.update(steps=n_batches, samples=n_seen, bad_images=n_bad)
    if n_bad:
        log.warning("epoch %d: skipped %d unreadable images", epoch, n_bad)
    return stats


@torch.no_grad()
def predict_loader(model, loader, device, tta: bool = False) -> dict[str, np.ndarray]:
    """Run the model over a loader; returns arrays aligned with the dataset
    indices that were readable (`index`)."""
    model.eval()
    keys = ("expression", "va", "va_mask", "class_mask", "aus", "aus_mask", "index")
    acc: dict[str, list] = {k: [] for k in (*keys, "logits", "va_pred", "aus_logits")}
    n_bad = 0
    for batch in loader:
        n_bad += int(batch.pop("n_bad", 0))
        if not batch.pop("batch_size", 0):
            continue
        x = batch["image"].to(device)
        b = batch["blendshapes"].to(device) if "blendshapes" in batch else None
        out = model(x, b)
        if tta:  # average with the mirrored face (and its mirrored blendshapes)
            names = (model.module if hasattr(model, "module") else model).blendshape_names
            flipped = model(torch.flip(x, dims=[3]), None if b is None else b[:, mirror_order(names)])
            out = tta_average(out, flipped)
        acc["logits"].append(out[OUTPUT_EXPRESSION].float().cpu().numpy())
        acc["va_pred"].append(out[OUTPUT_VA].float().cpu().numpy())
        if OUTPUT_AUS in out:
            acc["aus_logits"].append(out[OUTPUT_AUS].float().cpu().numpy())
        for k in keys:
            if k in batch:
                acc[k].append(batch[k].cpu().numpy())
    result = {k: np.concatenate(v) for k, v in acc.items() if v}
    result["n_bad"] = np.array(n_bad)
    return result


def metrics_from_predictions(pred: dict[str, np.ndarray], labels: list[str], au_names: list[str],
                             dataset: str, model_name: str, bootstrap: int = 0) -> dict[str, Any]:
    from affect.preprocess import softmax

    y = pred["expression"]
    has_label = y >= 0
    logits = pred["logits"]
    va_true = np.where(pred["va_mask"], pred["va"], np.nan)
    kwargs: dict[str, Any] = {}
    if au_names and "aus_logits" in pred:
        aus_true = np.where(pred["aus_mask"], pred["aus"], np.nan)
        kwargs.update(aus_true=aus_true, aus_prob=au_probabilities(pred["aus_logits"]), au_names=au_names)
    return compute_metrics(labels, y[has_label], softmax(logits[has_label]),
                           va_true=va_true, va_pred=pred["va_pred"], dataset=dataset, model=model_name,
                           bootstrap=bootstrap, **kwargs)


def flat_scores(metrics: dict[str, Any]) -> dict[str, float]:
    expr = metrics.get("expression") or {}
    out = {
        "accuracy": expr.get("accuracy", float("nan")),
        "macro_f1": expr.get("macro_f1", float("nan")),
        "valence_ccc": (metrics.get("valence") or {}).get("ccc", float("nan")),
        "arousal_ccc": (metrics.get("arousal") or {}).get("ccc", float("nan")),
    }
    parts = [v for v in out.values() if v == v]  # drop NaN
    # One number for early stopping and the "best" checkpoint: the mean of accuracy,
    # macro-F1, valence CCC and arousal CCC (those the validation part has).
    out["score"] = float(np.mean(parts)) if parts else float("nan")
    return out


def _build_optimizer(model: AffectModel, tcfg: dict) -> torch.optim.Optimizer:
    head = model.head_parameters()
    backbone = list(model.backbone.parameters())
    groups = [{"params": head, "lr": tcfg["lr"]},
              {"params": backbone, "lr": tcfg["lr"] * tcfg["backbone_lr_mult"]}]
    name = tcfg["optimizer"].lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(groups, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=tcfg["lr"], momentum=tcfg["momentum"],
                               weight_decay=tcfg["weight_decay"], nesterov=True)
    raise TrainError(f"unknown optimizer {tcfg['optimizer']!r}; choose adamw, adam or sgd")


def _set_backbone_trainable(model: AffectModel, trainable: bool, frozen_blocks: Sequence[nn.Module] = ()) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(trainable)
    for block in frozen_blocks:
        block.requires_grad_(False)


def _frozen_blocks(model: AffectModel, tcfg: dict) -> list[nn.Module]:
    n = tcfg.get("freeze_blocks") or 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TrainError(f"train.freeze_blocks must be a whole number of blocks (0: none), got {n!r}")
    if not n:
        return []
    try:
        blocks = backbone_blocks(model.backbone)
    except ModelError as exc:
        raise TrainError(f"train.freeze_blocks: {exc}") from None
    if n >= len(blocks):
        raise TrainError(f"train.freeze_blocks {n} would freeze all {len(blocks)} blocks of {model.name}; "
                         "use train.freeze_backbone for that")
    return blocks[:n]


def fit(cfg: dict, resume: bool = False, resume_overrides: list[str] | None = None) -> Path:
    """Train per the config; returns the run directory. With `resume`, the run's
    own saved config is used; `resume_overrides` (KEY=VALUE, from the command
    line) are applied to it where a started run can take them, else refused."""
    tcfg = cfg["train"]
    device = _device()
    rank, world = _dist_setup(device)
    if tcfg.get("threads"):
        # Fewer intra-op threads than cores is much faster when the CPU is shared
        # (OpenMP spin-waits badly under contention).
        torch.set_num_threads(int(tcfg["threads"]))
    seed_everything(int(cfg["seed"]) + rank)
    run_dir = Path(cfg.get("run_dir") or Path("runs") / cfg["name"])
    resume_state = None
    if _is_main():
        remove_stale_temporaries(run_dir)
    if resume:
        resume_state, _ = load_resume_state(run_dir)
        saved = resume_state["config"] or cfg
        if resume_overrides is None:  # called as a function: the run's own config, as saved
            cfg = saved
        else:
            cfg, changed = resume_config(saved, resume_overrides)
            for line in changed:
                print(f"resume: {line}", flush=True)
        cfg["run_dir"] = str(run_dir)
        tcfg = cfg["train"]
        done = int(resume_state["epoch"])
        if int(tcfg["epochs"]) < done:
            raise TrainError(f"{run_dir}: train.epochs {tcfg['epochs']} is below the {done} epochs already "
                             "trained; pass a larger --epochs to train longer")
        if int(tcfg["epochs"]) == done and _is_main():
            print(f"{run_dir}: the run already finished its {done} epochs; nothing to train "
                  f"(pass --epochs N with --resume to train longer)", flush=True)
    if run_dir.exists() and not resume and has_resume_point(run_dir):
        raise TrainError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --run-dir")

    splits = build_splits(cfg)
    labels = list(cfg["labels"])
    mcfg = cfg["model"]
    au_names = list(splits.au_names) if mcfg.get("num_aus", 0) else []
    num_aus = len(au_names)
    bs_names = blendshape_names(mcfg)
    if bs_names:
        attach_run_blendshapes([*splits.train, *splits.val], cfg, bs_names)
    model = build_model(mcfg["backbone"], num_classes=len(labels),
                        pretrained=None if resume_state else mcfg["pretrained"], hidden=mcfg["hidden"],
                        dropout=mcfg["dropout"], num_landmarks=mcfg["num_landmarks"], num_aus=num_aus,
                        input_size=mcfg["input_size"], blendshapes=bs_names,
                        blendshape_standardise=bool(bs_names and mcfg.get("blendshape_standardise")))
    if model.blendshapes is not None and model.blendshapes.standardise and not resume_state:
        model.blendshapes.set_statistics(np.stack([s.blendshapes for p in splits.train for s in p.samples]))
    if resume_state:
        model.mean, model.std = tuple(resume_state["spec"]["mean"]), tuple(resume_state["spec"]["std"])
        model.load_state_dict(drop_imagenet_classifier(resume_state["state_dict"]))
    trained_on = "+".join(f"{d.get('type')}:{Path(str(d.get('root'))).name}" for d in cfg["data"]["datasets"])
    spec = spec_for(model, labels, trained_on=trained_on, au_names=au_names)
    margs = model_args(model, mcfg["hidden"], mcfg["dropout"])
    model.to(device)
    if tcfg.get("channels_last", True):
        # Only the layout in memory changes (the weights and every result stay the same).
        model.to(memory_format=torch.channels_last)
    frozen_blocks = _frozen_blocks(model, tcfg)

    train_on_val = bool(tcfg.get("train_on_val"))
    if train_on_val:
        # Each dataset's val share joins its train share; sampling weights stay per dataset.
        splits.train = list(splits.train) + [p.thinned() for p in splits.val]
        if _is_main():
            print("train.train_on_val: the validation part is trained on too; the checkpoint is the last "
                  "epoch's and validation metrics are on seen data", flush=True)
    if (cfg.get("distill") or {}).get("teacher"):
        attach_run_teacher(splits.train, cfg, bs_names)
    train_ds = make_dataset(splits.train, cfg, model.input_size, model.mean, model.std, au_names, train=True,
                            blendshapes=bs_names)
    val_ds = make_dataset(splits.val, cfg, model.input_size, model.mean, model.std, au_names, train=False,
                          blendshapes=bs_names)
    train_samples = train_ds.samples
    bs, workers = int(tcfg["batch_size"]), int(cfg["data"].get("num_workers", 0))
    balance = cfg["data"].get("balance", "none")
    class_weight = None
    if balance == "loss_weights":
        class_weight = torch.as_tensor(tdata.class_weights(train_samples, len(labels)), dtype=torch.float32,
                                       device=device)
    dataset_weights = [float(i.weight) for i in splits.infos]
    draws = tcfg.get("samples_per_epoch")
    if draws is not None and (not isinstance(draws, int) or isinstance(draws, bool) or draws < 1):
        raise TrainError(f"train.samples_per_epoch must be a positive whole number of draws, got {draws!r}")
    if world > 1:
        sampler = DistributedSampler(train_ds, shuffle=True, seed=int(cfg["seed"]))
    elif balance == "oversample" or len(set(dataset_weights)) > 1 or tcfg.get("samples_per_epoch"):
        part_weights = [p.draw_weight for p in splits.train]
        sampler = tdata.build_sampler(train_ds.datasets, part_weights,
                                      balance="oversample" if balance == "oversample" else None,
                                      num_samples=tcfg.get("samples_per_epoch"),
                                      generator=torch.Generator().manual_seed(int(cfg["seed"])))
    else:
        sampler = None
    loader_kw = dict(num_workers=workers, collate_fn=tdata.collate_skip_bad, pin_memory=device.type == "cuda",
                     persistent_workers=workers > 0)
    train_loader = DataLoader(train_ds, batch_size=bs, shuffle=sampler is None, sampler=sampler,
                              drop_last=len(train_ds) > bs, **loader_kw)
    val_loader = DataLoader(val_ds, batch_size=bs * 2, shuffle=False, **loader_kw)

    optimizer = _build_optimizer(model, tcfg)
    epochs = int(tcfg["epochs"])
    steps_per_epoch = max(len(train_loader), 1)
    warmup = int(float(tcfg.get("warmup_epochs") or 0) * steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    sched_name = (tcfg.get("scheduler") or "none").lower()
    if sched_name == "cosine":
        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total_steps - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    elif sched_name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=tcfg["plateau_factor"], patience=tcfg["plateau_patience"])
    elif sched_name == "none":
        scheduler = None
    else:
        raise TrainError(f"unknown scheduler {sched_name!r}; choose cosine, plateau or none")
    per_step = scheduler is not None and sched_name == "cosine"

    scaler = None
    if device.type == "cuda" and tcfg.get("amp", "auto") in ("auto", True):
        scaler = torch.amp.GradScaler("cuda")

    history: list[dict[str, Any]] = []
    start_epoch, best, best_epoch, bad_epochs, elapsed = 1, -math.inf, 0, 0, 0.0
    if resume_state:
        optimizer.load_state_dict(resume_state["optimizer"])
        if scheduler is not None and resume_state.get("scheduler"):
            scheduler.load_state_dict(resume_state["scheduler"])
        history = list(resume_state.get("history", []))
        start_epoch = int(resume_state["epoch"]) + 1
        best, best_epoch = float(resume_state.get("best", -math.inf)), int(resume_state.get("best_epoch", 0))
        bad_epochs, elapsed = int(resume_state.get("bad_epochs", 0)), float(resume_state.get("elapsed", 0.0))
        if "rng_torch" in resume_state:
            torch.set_rng_state(resume_state["rng_torch"])
        log.info("resuming %s at epoch %d", run_dir, start_epoch)

    ema = _build_ema(core_model=model, decay=tcfg.get("ema"))
    if ema is not None and resume_state and "ema_state" in resume_state:
        ema.module.load_state_dict(resume_state["ema_state"])
        ema.n_averaged.fill_(int(resume_state.get("ema_n", 1)))

    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core: AffectModel = model.module if hasattr(model, "module") else model

    writer = None
    if _is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        atomic_write_json(run_dir / "splits.json", {
            split: [s.path for p in getattr(splits, split) for s in p.samples] for split in ("train", "val", "test")})
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            log.warning("tensorboard not installed: no TensorBoard logs")
        print(f"run {run_dir}: {core.name} {count_parameters(core) / 1e6:.2f}M params, input {core.input_size}px, "
              f"weights {core.weights_source}; train {splits.count('train')} / val {splits.count('val')} / "
              f"held-out test {splits.count('test')}; {epochs} epochs on {device}", flush=True)

    stop_metric = tcfg.get("early_stopping_metric") or "score"
    patience = tcfg.get("early_stopping_patience")
    max_steps = tcfg.get("max_steps")
    steps_done = sum(int(h.get("train_steps", 0)) for h in history)
    def after_step() -> None:
        if per_step:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(core)

    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        frozen = bool(tcfg["freeze_backbone"])
        if tcfg.get("unfreeze_after") is not None:
            frozen = epoch <= int(tcfg["unfreeze_after"])
        _set_backbone_trainable(core, not frozen, frozen_blocks)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, optimizer, after_step,
                                cfg, device, epoch, class_weight, scaler, max_steps, steps_done, frozen,
                                frozen_blocks)
        steps_done += stats["steps"]
        # The averaged weights, when kept, are the model that is evaluated and saved.
        evaluated: AffectModel = ema.module if ema is not None else core
        pred = predict_loader(evaluated, val_loader, device, tta=bool(tcfg.get("eval_tta")))
        val_metrics = metrics_from_predictions(pred, labels, au_names, "val", core.name)
        scores = flat_scores(val_metrics)
        with torch.no_grad():
            val_loss = _val_loss(evaluated, pred, cfg, class_weight, device)
        if scheduler is not None and not per_step:
            scheduler.step(scores.get(stop_metric.removeprefix("val_"), scores["score"]))
        elapsed += time.time() - t0
        row = {"epoch": epoch, "train_loss": stats.get("loss", float("nan")), "val_loss": val_loss,
               **{f"train_{k}": v for k, v in stats.items() if k.startswith("loss_")},
               **{f"val_{k}": v for k, v in scores.items()},
               "lr": optimizer.param_groups[0]["lr"], "train_steps": stats["steps"],
               "bad_images": stats["bad_images"] + int(pred["n_bad"]), "seconds": time.time() - t0}
        history.append(row)
        current = scores.get(stop_metric.removeprefix("val_"), scores["score"])
        if stop_metric.removeprefix("val_") == "loss":
            current = -val_loss
        improved = current > best or train_on_val  # no unseen val part: keep the last epoch
        if improved:
            best, best_epoch, bad_epochs = current, epoch, 0
        else:
            bad_epochs += 1
        if _is_main():
            if writer is not None:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and k != "epoch":
                        writer.add_scalar(k, v, epoch)
            # Checkpoints first, history.csv last: a kill in between leaves a resume point that
            # holds this epoch (last.pt carries the history), never a history row without one.
            common = dict(model=evaluated, spec=spec, model_args=margs, config=cfg, epoch=epoch)
            if improved:
                save_checkpoint(run_dir / "checkpoint.pt", metrics=val_metrics, **common)
                atomic_write_json(run_dir / "metrics.json", val_metrics)
            # last.pt holds the trained weights (to resume from) and, with EMA, the average beside them.
            resume_extra = ({"ema_state": ema.module.state_dict(), "ema_n": int(ema.n_averaged)}
                            if ema is not None else {})
            save_resume_checkpoint(run_dir, metrics=val_metrics, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict() if scheduler is not None else {},
                            history=history, best=best, best_epoch=best_epoch, bad_epochs=bad_epochs,
                            elapsed=elapsed, rng_torch=torch.get_rng_state(), **{**common, "model": core},
                            **resume_extra)
            _write_history(run_dir / "history.csv", history)
            print(f"epoch {epoch}/{epochs}: train loss {row['train_loss']:.3f}, val loss {val_loss:.3f}, "
                  f"acc {scores['accuracy']:.3f}, V-CCC {scores['valence_ccc']:.3f}, "
                  f"A-CCC {scores['arousal_ccc']:.3f}{' *' if improved else ''} ({row['seconds']:.0f}s)",
                  flush=True)
        if patience is not None and bad_epochs >= int(patience):  # never with train_on_val: every epoch "improves"
            if _is_main():
                print(f"early stopping: no {stop_metric} improvement for {patience} epochs", flush=True)
            break
        if max_steps is not None and steps_done >= int(max_steps):
            break
        reached = {k: v for k, v in (tcfg.get("stop_when") or {}).items() if scores.get(k, -math.inf) >= float(v)}
        if reached:
            if _is_main():
                print(f"stopping: targets met ({reached})", flush=True)
            break

    if _is_main():
        if writer is not None:
            writer.close()
        atomic_write_json(run_dir / "run.json", {
            "backbone": core.name, "parameters": count_parameters(core), "input_size": core.input_size,
            "weights": core.weights_source, "train_seconds": round(elapsed, 1), "epochs_run": len(history),
            "best_epoch": best_epoch, "best_" + stop_metric: best, "device": str(device), "world_size": world,
            "n_train": splits.count("train"), "n_val": splits.count("val"), "n_test": splits.count("test"),
        })
        try:
            from train.evaluate import write_curves

            write_curves(run_dir / "history.csv", run_dir / "curves.png")
        except ImportError:
            pass
    if dist.is_initialized():
        dist.destroy_process_group()
    return run_dir


def _build_ema(core_model: nn.Module, decay) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the weights and BatchNorm statistics,
    or None when `train.ema` is off."""
    if decay is None or decay is False:
        return None
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) < 1.0:
        raise TrainError(f"train.ema must be a decay between 0 and 1 (e.g. 0.998) or null, got {decay!r}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(core_model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)


def _val_loss(model, pred: dict[str, np.ndarray], cfg: dict, class_weight, device) -> float:
    batch = {"expression": torch.as_tensor(pred["expression"]), "va": torch.as_tensor(pred["va"]),
             "va_mask": torch.as_tensor(pred["va_mask"])}
    if "class_mask" in pred:
        batch["class_mask"] = torch.as_tensor(pred["class_mask"])
    out = {OUTPUT_EXPRESSION: torch.as_tensor(pred["logits"]), OUTPUT_VA: torch.as_tensor(pred["va_pred"])}
    lcfg = dict(cfg, loss={**cfg["loss"], "landmarks": 0, "aus": 0})
    loss, _ = compute_loss(out, batch, lcfg, class_weight.cpu() if class_weight is not None else None)
    return float(loss)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())
