"""The fit loop, as plain functions (after torchvision's reference train.py):
`fit(cfg)` sets a run up step by step (`_run_config`, `build_splits`, `attach_run_blendshapes`,
`_build_run_model`, `attach_run_teacher`, `attach_va_prior`, `_build_loaders`, `_build_optimizer`,
`_build_scheduler`, `_restore`; the data steps are `train.data.assembly`'s), then per epoch
`train_one_epoch(...)`, `_validate(...)` (`predict_loader` + `metrics_from_predictions`: the
one evaluator's predict and score steps, `inference.evaluation`), `_save_epoch(...)` and `_stop_reason(...)`.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from affect.files import atomic_write_json, atomic_write_text
from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_LANDMARKS, OUTPUT_VA
from inference.evaluation import Targets, score
from inference.evaluation import predict as run_batches
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
from train.config import ConfigError, check_config, dump_config, resume_config
from train.data.assembly import (
    Splits,
    attach_run_blendshapes,
    attach_run_teacher,
    attach_va_prior,
    blendshape_names,
    build_splits,
    make_dataset,
)
from train.distill import distillation_loss
from train.errors import TrainError
from train.losses import au_loss, landmark_loss, masked_cross_entropy, va_loss
from train.models import (
    AffectModel,
    ModelError,
    backbone_blocks,
    build_model,
    count_parameters,
    drop_imagenet_classifier,
)

log = logging.getLogger("train")


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


# --- the loop --------------------------------------------------------------------------------------------

def compute_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: dict,
                 class_weight: torch.Tensor | None,
                 au_pos_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
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
        parts["aus"] = lcfg["aus"] * au_loss(out[OUTPUT_AUS], batch["aus"], batch["aus_mask"], au_pos_weight)
    if "va_prior" in batch:  # the class's valence/arousal, only where the face has none of its own
        prior = batch["va_prior"]
        pseudo = ~batch["va_mask"].bool() & torch.isfinite(prior)
        parts["va_prior"] = float(lcfg["va_prior"]) * va_loss(out[OUTPUT_VA], torch.nan_to_num(prior), pseudo,
                                                              lcfg["va_loss"])
    if "teacher" in batch:
        distill_cfg = cfg["distill"]
        kl, va = distillation_loss(out[OUTPUT_EXPRESSION], out[OUTPUT_VA], batch["teacher"], batch["va_mask"],
                                   distill_cfg["temperature"], lcfg["va_loss"])
        parts["distill"] = float(distill_cfg["weight"]) * kl
        parts["distill_va"] = float(distill_cfg["va_weight"]) * va
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    head = model.module.head_parameters() if hasattr(model, "module") else model.head_parameters()
    return sum(p.abs().sum() for p in head if p.ndim > 1)


def train_one_epoch(model, loader, optimizer, scheduler_step, cfg, device, epoch, class_weight, scaler,
                    max_steps: int | None, step_offset: int = 0, frozen: bool = False,
                    frozen_blocks: Sequence[nn.Module] = (), au_pos_weight: torch.Tensor | None = None
                    ) -> dict[str, float]:
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
            loss, parts = compute_loss(out, batch, cfg, class_weight, au_pos_weight)
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


TARGET_KEYS = ("expression", "va", "va_mask", "class_mask", "aus", "aus_mask")


@torch.no_grad()
def predict_loader(model, loader, device, tta: bool = False) -> dict[str, np.ndarray]:
    """Run the model over a loader through the one evaluator's predict step (inference.evaluation,
    as `train eval` and `export bench` do): the batch targets beside the model's outputs (`logits`,
    `va_pred`, `aus_logits`), for the dataset indices that were readable (`index`)."""
    model.eval()
    core = model.module if hasattr(model, "module") else model
    targets: dict[str, list[np.ndarray]] = {k: [] for k in TARGET_KEYS}
    n_bad = 0

    def predict(x: np.ndarray, b: np.ndarray | None) -> dict[str, np.ndarray]:
        out = model(torch.from_numpy(x).to(device), None if b is None else torch.from_numpy(b).to(device))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def batches():
        nonlocal n_bad
        for batch in loader:
            n_bad += int(batch.pop("n_bad", 0))
            if not batch.pop("batch_size", 0):
                continue
            for k in TARGET_KEYS:
                if k in batch:
                    targets[k].append(batch[k].cpu().numpy())
            b = batch.get("blendshapes")
            yield batch["image"].numpy(), None if b is None else b.numpy(), batch["index"].numpy()

    pred = run_batches(predict, batches(), tta, core.blendshape_names)
    result = {k: np.concatenate(v) for k, v in targets.items() if v}
    names = {"index": "index", "logits": "logits", "va": "va_pred", "aus": "aus_logits"}
    result.update({names[k]: (v if k == "index" else v.astype(np.float32)) for k, v in pred.items()})
    result["n_bad"] = np.array(n_bad)
    return result


def batch_targets(pred: dict[str, np.ndarray]) -> Targets:
    """The targets `predict_loader` gathered from the batches (already on the run's labels,
    in prediction order), as the one evaluator's `Targets` (NaN where a mask is off)."""
    aus = np.where(pred["aus_mask"], pred["aus"], np.nan) if "aus" in pred and "aus_mask" in pred else None
    return Targets(pred["expression"], np.where(pred["va_mask"], pred["va"], np.nan), aus)


def metrics_from_predictions(pred: dict[str, np.ndarray], labels: list[str], au_names: list[str],
                             dataset: str, model_name: str, bootstrap: int = 0) -> dict[str, Any]:
    """Validation metrics: `predict_loader`'s output scored by the one evaluator (`inference.evaluation`)."""
    raw = {"index": pred["index"], "logits": pred["logits"], "va": pred["va_pred"]}
    if "aus_logits" in pred:
        raw["aus"] = pred["aus_logits"]
    return score(batch_targets(pred), raw, labels, au_names, dataset=dataset, model=model_name,
                 bootstrap=bootstrap)


def flat_scores(metrics: dict[str, Any]) -> dict[str, float]:
    expr = metrics.get("expression") or {}
    out = {
        "accuracy": expr.get("accuracy", float("nan")),
        "macro_f1": expr.get("macro_f1", float("nan")),
        "valence_ccc": (metrics.get("valence") or {}).get("ccc", float("nan")),
        "arousal_ccc": (metrics.get("arousal") or {}).get("ccc", float("nan")),
    }
    aus = metrics.get("action_units") or {}
    if aus:
        out["au_f1_macro"] = aus.get("f1_macro", float("nan"))
    parts = [v for v in out.values() if v == v]  # drop NaN
    if aus:
        out.update(au_binary_accuracy=aus.get("binary_accuracy", float("nan")),
                   au_f1_micro=aus.get("f1_micro", float("nan")), au_map=aus.get("map", float("nan")))
    # One number for early stopping and the "best" checkpoint: the mean of accuracy,
    # macro-F1, valence CCC and arousal CCC (those the validation part has), and the AU
    # macro-F1 for a model with an AU head.
    out["score"] = float(np.mean(parts)) if parts else float("nan")
    return out


# --- one run, step by step (after torchvision's reference `main`) ----------------------------------------

def fit(cfg: dict, resume: bool = False, resume_overrides: list[str] | None = None) -> Path:
    """Train per the config; returns the run directory. With `resume`, the run's
    own saved config is used; `resume_overrides` (KEY=VALUE, from the command
    line) are applied to it where a started run can take them, else refused."""
    device = _device()
    rank, world = _dist_setup(device)
    cfg, run_dir, resume_state = _run_config(cfg, resume, resume_overrides)
    tcfg = cfg["train"]
    if tcfg.get("threads"):
        # Fewer intra-op threads than cores is much faster when the CPU is shared
        # (OpenMP spin-waits badly under contention).
        torch.set_num_threads(int(tcfg["threads"]))
    seed_everything(int(cfg["seed"]) + rank)

    splits = build_splits(cfg)
    bs_names = blendshape_names(cfg["model"])
    if bs_names:  # every training and validation face's blendshapes (computed once, cached)
        attach_run_blendshapes([*splits.train, *splits.val], cfg, bs_names, progress=_is_main())
    model, spec, margs, au_names = _build_run_model(cfg, splits, resume_state, device)
    frozen_blocks = _frozen_blocks(model, tcfg)
    if tcfg.get("train_on_val"):
        # Each dataset's val share joins its train share; sampling weights stay per dataset.
        splits.train = list(splits.train) + [p.thinned() for p in splits.val]
        if _is_main():
            print("train.train_on_val: the validation part is trained on too; the checkpoint is the last "
                  "epoch's and validation metrics are on seen data", flush=True)
    if (cfg.get("distill") or {}).get("teacher"):  # the teacher's outputs for every training face (cached)
        attach_run_teacher(splits.train, cfg, bs_names, progress=_is_main())
    if float(cfg["loss"].get("va_prior") or 0.0) > 0:  # faces without V/A: their class's mean, training faces only
        counts = attach_va_prior(splits.train, list(cfg["labels"]))
        if _is_main():
            print(f"loss.va_prior: {counts['prior']} of {counts['faces']} training faces get their class's "
                  f"valence/arousal (means over the {counts['own']} that have both)", flush=True)
    loaders = _build_loaders(cfg, splits, model, au_names, device, world)
    optimizer = _build_optimizer(model, tcfg)
    scheduler, per_step = _build_scheduler(optimizer, tcfg, max(len(loaders.train), 1))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and tcfg.get("amp", "auto") in ("auto", True) \
        else None
    progress = _restore(resume_state, optimizer, scheduler, run_dir,
                        rebuild=lambda: _build_scheduler(optimizer, tcfg, max(len(loaders.train), 1))[0])
    ema = _build_ema(core_model=model, decay=tcfg.get("ema"))
    if ema is not None and resume_state and "ema_state" in resume_state:
        ema.module.load_state_dict(resume_state["ema_state"])
        ema.n_averaged.fill_(int(resume_state.get("ema_n", 1)))
    core = model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = _start_run_dir(run_dir, cfg, splits, core, device) if _is_main() else None

    def after_step() -> None:
        if per_step:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(core)

    for epoch in range(progress.start_epoch, int(tcfg["epochs"]) + 1):
        t0 = time.time()
        frozen = bool(tcfg["freeze_backbone"])
        if tcfg.get("unfreeze_after") is not None:
            frozen = epoch <= int(tcfg["unfreeze_after"])
        _set_backbone_trainable(core, not frozen, frozen_blocks)
        if isinstance(loaders.sampler, DistributedSampler):
            loaders.sampler.set_epoch(epoch)
        stats = train_one_epoch(model, loaders.train, optimizer, after_step, cfg, device, epoch,
                                loaders.class_weight, scaler, tcfg.get("max_steps"), progress.steps_done,
                                frozen, frozen_blocks, loaders.au_pos_weight)
        # The averaged weights, when kept, are the model that is evaluated and saved.
        evaluated: AffectModel = ema.module if ema is not None else core
        val_metrics, scores, val_loss, val_bad = _validate(evaluated, loaders, cfg, device, au_names)
        if scheduler is not None and not per_step:
            scheduler.step(_stop_value(scores, val_loss, tcfg))
        row = _history_row(epoch, stats, scores, val_loss, val_bad, optimizer, t0)
        improved = progress.record(row, _stop_value(scores, val_loss, tcfg), bool(tcfg.get("train_on_val")),
                                   time.time() - t0)
        if _is_main():
            _save_epoch(run_dir, writer, progress, row, val_metrics, improved, evaluated=evaluated, core=core,
                        spec=spec, margs=margs, cfg=cfg, optimizer=optimizer, scheduler=scheduler, ema=ema)
        reason = _stop_reason(progress, scores, tcfg)
        if reason:
            if _is_main() and reason != "max_steps":
                print(reason, flush=True)
            break

    if _is_main():
        _finish_run(run_dir, writer, progress, core, splits, device, world, tcfg)
        _choose_au_thresholds(run_dir, au_names, tcfg)
    if dist.is_initialized():
        dist.destroy_process_group()
    return run_dir


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    sampler: Any
    class_weight: torch.Tensor | None
    au_pos_weight: torch.Tensor | None = None


@dataclass
class Progress:
    """What the epoch loop carries from epoch to epoch; last.pt holds it for a resume."""
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 1
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed: float = 0.0

    @property
    def steps_done(self) -> int:
        return sum(int(h.get("train_steps", 0)) for h in self.history)

    def record(self, row: dict[str, Any], value: float, train_on_val: bool, seconds: float) -> bool:
        """Add the epoch's row; True when it is the best so far (always, with no unseen val part)."""
        self.history.append(row)
        self.elapsed += seconds
        improved = value > self.best or train_on_val
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, row["epoch"], 0
        else:
            self.bad_epochs += 1
        return improved


def _run_config(cfg: dict, resume: bool, resume_overrides: list[str] | None) -> tuple[dict, Path, dict | None]:
    """The config the run trains with (its own saved one on resume), checked; its directory;
    the resume state, if any."""
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
        done = int(resume_state["epoch"])
        epochs = int(cfg["train"]["epochs"])
        if epochs < done:
            raise TrainError(f"{run_dir}: train.epochs {epochs} is below the {done} epochs already "
                             "trained; pass a larger --epochs to train longer")
        if epochs == done and _is_main():
            print(f"{run_dir}: the run already finished its {done} epochs; nothing to train "
                  f"(pass --epochs N with --resume to train longer)", flush=True)
    if run_dir.exists() and not resume and has_resume_point(run_dir):
        raise TrainError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --run-dir")
    try:
        check_config(cfg)
    except ConfigError as exc:
        raise TrainError(str(exc)) from None
    return cfg, run_dir, resume_state


def trained_on_text(cfg: dict, splits: Splits) -> str:
    """The model's `trained_on`: the datasets its training part drew from, as `type:folder`
    (`/usage` where one folder holds several parts); a held-out-only part is not one of them."""
    parts = [*splits.train, *(splits.val if cfg["train"].get("train_on_val") else [])]
    trained = {id(p.info) for p in parts}
    names = []
    for dcfg, info in zip(cfg["data"]["datasets"], splits.infos):
        if id(info) in trained:
            usage = f"/{dcfg['usage']}" if dcfg.get("usage") else ""
            names.append(f"{dcfg.get('type')}:{Path(str(dcfg.get('root'))).name}{usage}")
    return "+".join(dict.fromkeys(names))


def _build_run_model(cfg: dict, splits: Splits, resume_state: dict | None, device: torch.device
                     ) -> tuple[AffectModel, Any, dict[str, Any], list[str]]:
    """The model (ImageNet weights, or the resume point's), on the device; its spec, build args
    and action-unit names."""
    mcfg = cfg["model"]
    au_names = list(splits.au_names) if mcfg.get("num_aus", 0) else []
    bs_names = blendshape_names(mcfg)
    model = build_model(mcfg["backbone"], num_classes=len(cfg["labels"]),
                        pretrained=None if resume_state else mcfg["pretrained"], hidden=mcfg["hidden"],
                        dropout=mcfg["dropout"], num_landmarks=mcfg["num_landmarks"], num_aus=len(au_names),
                        input_size=mcfg["input_size"], blendshapes=bs_names,
                        blendshape_standardise=bool(bs_names and mcfg.get("blendshape_standardise")))
    if model.blendshapes is not None and model.blendshapes.standardise and not resume_state:
        model.blendshapes.set_statistics(np.stack([s.blendshapes for p in splits.train for s in p.samples]))
    if resume_state:
        model.mean, model.std = tuple(resume_state["spec"]["mean"]), tuple(resume_state["spec"]["std"])
        model.load_state_dict(drop_imagenet_classifier(resume_state["state_dict"]))
        # Where the weights first came from (the ImageNet file), not "random" for a resumed run.
        model.weights_source = resume_state.get("weights_source") or "resumed (last.pt)"
    spec = spec_for(model, list(cfg["labels"]), trained_on=trained_on_text(cfg, splits), au_names=au_names)
    margs = model_args(model, mcfg["hidden"], mcfg["dropout"])
    model.to(device)
    if cfg["train"].get("channels_last", True):
        # Only the layout in memory changes (the weights and every result stay the same).
        model.to(memory_format=torch.channels_last)
    return model, spec, margs, au_names


def _build_loaders(cfg: dict, splits: Splits, model: AffectModel, au_names: list[str], device: torch.device,
                   world: int) -> Loaders:
    """Training and validation loaders; training draws by dataset weight (or `samples_per_epoch`)."""
    tcfg = cfg["train"]
    bs_names = tuple(model.blendshape_names)
    train_ds = make_dataset(splits.train, cfg, model.input_size, model.mean, model.std, au_names, train=True,
                            blendshapes=bs_names, progress=_is_main())
    val_ds = make_dataset(splits.val, cfg, model.input_size, model.mean, model.std, au_names, train=False,
                          blendshapes=bs_names, progress=_is_main())
    bs, workers = int(tcfg["batch_size"]), int(cfg["data"].get("num_workers", 0))
    balance = cfg["data"].get("balance", "none")
    class_weight = None
    if balance == "loss_weights":
        class_weight = torch.as_tensor(tdata.class_weights(train_ds.samples, len(cfg["labels"])),
                                       dtype=torch.float32, device=device)
    dataset_weights = [float(i.weight) for i in splits.infos]
    if world > 1:
        sampler = DistributedSampler(train_ds, shuffle=True, seed=int(cfg["seed"]))
    elif balance == "oversample" or len(set(dataset_weights)) > 1 or tcfg.get("samples_per_epoch"):
        sampler = tdata.build_sampler(train_ds.datasets, [p.draw_weight for p in splits.train],
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
    return Loaders(train_loader, val_loader, sampler, class_weight,
                   _au_pos_weight(splits, au_names, cfg["loss"].get("au_pos_weight"), device))


def _au_pos_weight(splits: Splits, au_names: list[str], kind: Any, device: torch.device) -> torch.Tensor | None:
    """loss.au_pos_weight "balanced": each AU's positives weigh (absent / present) among the
    training faces (capped at 10), so rare AUs are not learnt as "always absent"; "sqrt": the
    square root of that weight (capped at sqrt 10), halfway on the log scale between the plain
    loss (best binary accuracy) and the balanced one (best recall on rare AUs)."""
    if not au_names or kind in (None, False, "none"):
        return None
    if kind not in ("balanced", "sqrt"):
        raise TrainError(f"loss.au_pos_weight must be none, sqrt or balanced, got {kind!r}")
    rows = [s.aus for p in splits.train for s in p.samples if s.aus is not None and len(s.aus) == len(au_names)]
    if not rows:
        return None
    y = np.nan_to_num(np.stack(rows).astype(np.float64), nan=0.0)
    pos = y.sum(axis=0)
    weight = np.clip((len(y) - pos) / np.maximum(pos, 1.0), 1.0, 10.0)
    if kind == "sqrt":
        weight = np.sqrt(weight)
    return torch.as_tensor(weight, dtype=torch.float32, device=device)


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


def _build_scheduler(optimizer: torch.optim.Optimizer, tcfg: dict, steps_per_epoch: int):
    """(scheduler or None, whether it steps per optimisation step). cosine: a linear warm-up over
    `warmup_epochs` into a cosine decay to zero at the last step, stepped per step; plateau: halve
    on a stalled validation score, stepped per epoch."""
    from torch.optim import lr_scheduler

    name = (tcfg.get("scheduler") or "none").lower()
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=tcfg["plateau_factor"],
                                              patience=tcfg["plateau_patience"]), False
    if name != "cosine":
        return None, False
    warmup = int(float(tcfg.get("warmup_epochs") or 0) * steps_per_epoch)
    total = int(tcfg["epochs"]) * steps_per_epoch
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
    if warmup == 0:
        return cosine, True
    # Step s < warmup runs at (s + 1) / warmup of the base rate; the cosine starts at the base rate.
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                   total_iters=max(warmup - 1, 1))
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup]), True


def _restore(resume_state: dict | None, optimizer, scheduler, run_dir: Path,
             rebuild: Callable[[], Any] | None = None) -> Progress:
    """The loop's progress, and the optimiser's and scheduler's state, from a resume point.
    `rebuild` makes a fresh scheduler for the optimiser (to replay an old run's steps)."""
    if not resume_state:
        return Progress()
    optimizer.load_state_dict(resume_state["optimizer"])
    progress = Progress(history=list(resume_state.get("history", [])), start_epoch=int(resume_state["epoch"]) + 1,
                        best=float(resume_state.get("best", -math.inf)),
                        best_epoch=int(resume_state.get("best_epoch", 0)),
                        bad_epochs=int(resume_state.get("bad_epochs", 0)),
                        elapsed=float(resume_state.get("elapsed", 0.0)))
    saved = resume_state.get("scheduler")
    if scheduler is not None and saved:
        try:
            scheduler.load_state_dict(dict(saved))
        except (KeyError, TypeError, ValueError):
            # A run saved before the schedule was torch's own (one LambdaLR): replay its steps on a
            # fresh schedule from the initial rates (torch's schedules scale the current rate).
            if rebuild is None:
                raise
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            fresh = rebuild()
            for _ in range(progress.steps_done):
                fresh.step()
            scheduler.load_state_dict(fresh.state_dict())
    if "rng_torch" in resume_state:
        torch.set_rng_state(resume_state["rng_torch"])
    log.info("resuming %s at epoch %d", run_dir, progress.start_epoch)
    return progress


def _start_run_dir(run_dir: Path, cfg: dict, splits: Splits, core: AffectModel, device: torch.device):
    """config.yaml and splits.json written, the TensorBoard writer (or None), the run's first line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "splits.json", {
        split: [s.path for p in getattr(splits, split) for s in p.samples] for split in ("train", "val", "test")})
    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    except ImportError:
        log.warning("tensorboard not installed: no TensorBoard logs")
    print(f"run {run_dir}: {core.name} {count_parameters(core) / 1e6:.2f}M params, input {core.input_size}px, "
          f"weights {core.weights_source}; train {splits.count('train')} / val {splits.count('val')} / "
          f"held-out test {splits.count('test')}; {cfg['train']['epochs']} epochs on {device}", flush=True)
    return writer


def _validate(model: AffectModel, loaders: Loaders, cfg: dict, device: torch.device, au_names: list[str]
              ) -> tuple[dict[str, Any], dict[str, float], float, int]:
    """Validation metrics, their flat scores, the validation loss and the unreadable images."""
    pred = predict_loader(model, loaders.val, device, tta=bool(cfg["train"].get("eval_tta")))
    metrics = metrics_from_predictions(pred, list(cfg["labels"]), au_names, "val", model.name)
    with torch.no_grad():
        val_loss = _val_loss(model, pred, cfg, loaders.class_weight, device)
    return metrics, flat_scores(metrics), val_loss, int(pred["n_bad"])


def _stop_value(scores: dict[str, float], val_loss: float, tcfg: dict) -> float:
    """The number that picks the best epoch (higher is better): train.early_stopping_metric."""
    metric = (tcfg.get("early_stopping_metric") or "score").removeprefix("val_")
    return -val_loss if metric == "loss" else scores.get(metric, scores["score"])


def _history_row(epoch: int, stats: dict[str, float], scores: dict[str, float], val_loss: float, val_bad: int,
                 optimizer, t0: float) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": stats.get("loss", float("nan")), "val_loss": val_loss,
            **{f"train_{k}": v for k, v in stats.items() if k.startswith("loss_")},
            **{f"val_{k}": v for k, v in scores.items()},
            "lr": optimizer.param_groups[0]["lr"], "train_steps": stats["steps"],
            "bad_images": stats["bad_images"] + val_bad, "seconds": time.time() - t0}


def _save_epoch(run_dir: Path, writer, progress: Progress, row: dict[str, Any], val_metrics: dict[str, Any],
                improved: bool, *, evaluated, core, spec, margs, cfg, optimizer, scheduler, ema) -> None:
    """TensorBoard scalars, checkpoint.pt when the epoch is the best, last.pt, history.csv, one line."""
    if writer is not None:
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "epoch":
                writer.add_scalar(k, v, row["epoch"])
    # Checkpoints first, history.csv last: a kill in between leaves a resume point that
    # holds this epoch (last.pt carries the history), never a history row without one.
    common = dict(model=evaluated, spec=spec, model_args=margs, config=cfg, epoch=row["epoch"])
    if improved:
        save_checkpoint(run_dir / "checkpoint.pt", metrics=val_metrics, **common)
        atomic_write_json(run_dir / "metrics.json", val_metrics)
    # last.pt holds the trained weights (to resume from) and, with EMA, the average beside them.
    resume_extra = ({"ema_state": ema.module.state_dict(), "ema_n": int(ema.n_averaged)}
                    if ema is not None else {})
    save_resume_checkpoint(run_dir, metrics=val_metrics, optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict() if scheduler is not None else {},
                           history=progress.history, best=progress.best, best_epoch=progress.best_epoch,
                           bad_epochs=progress.bad_epochs, elapsed=progress.elapsed,
                           rng_torch=torch.get_rng_state(), weights_source=core.weights_source,
                           **{**common, "model": core}, **resume_extra)
    _write_history(run_dir / "history.csv", progress.history)
    print(f"epoch {row['epoch']}/{cfg['train']['epochs']}: train loss {row['train_loss']:.3f}, "
          f"val loss {row['val_loss']:.3f}, acc {row['val_accuracy']:.3f}, V-CCC {row['val_valence_ccc']:.3f}, "
          f"A-CCC {row['val_arousal_ccc']:.3f}{' *' if improved else ''} ({row['seconds']:.0f}s)", flush=True)


def _stop_reason(progress: Progress, scores: dict[str, float], tcfg: dict) -> str | None:
    """Why the loop ends after this epoch (a line to print), or None to go on."""
    patience = tcfg.get("early_stopping_patience")
    if patience is not None and progress.bad_epochs >= int(patience):  # never with train_on_val
        return f"early stopping: no {tcfg.get('early_stopping_metric') or 'score'} improvement for {patience} epochs"
    max_steps = tcfg.get("max_steps")
    if max_steps is not None and progress.steps_done >= int(max_steps):
        return "max_steps"
    # Every target must be met (e.g. group accuracy and AU binary accuracy, both).
    targets = tcfg.get("stop_when") or {}
    reached = {k: v for k, v in targets.items() if scores.get(k, -math.inf) >= float(v)}
    return f"stopping: targets met ({reached})" if targets and len(reached) == len(targets) else None


def _finish_run(run_dir: Path, writer, progress: Progress, core: AffectModel, splits: Splits,
                device: torch.device, world: int, tcfg: dict) -> None:
    if writer is not None:
        writer.close()
    stop_metric = tcfg.get("early_stopping_metric") or "score"
    atomic_write_json(run_dir / "run.json", {
        "backbone": core.name, "parameters": count_parameters(core), "input_size": core.input_size,
        "weights": core.weights_source, "train_seconds": round(progress.elapsed, 1),
        "epochs_run": len(progress.history), "best_epoch": progress.best_epoch,
        "best_" + stop_metric: progress.best, "device": str(device), "world_size": world,
        "n_train": splits.count("train"), "n_val": splits.count("val"), "n_test": splits.count("test"),
    })
    try:
        from train.evaluate import write_curves

        write_curves(run_dir / "history.csv", run_dir / "curves.png")
    except ImportError:
        pass


def _choose_au_thresholds(run_dir: Path, au_names: list[str], tcfg: dict) -> None:
    """train.au_thresholds: per-AU thresholds chosen on the validation part, into checkpoint.pt
    (`train.au_thresholds.choose_for_run`); not with train_on_val (no unseen faces to choose on)."""
    rule = tcfg.get("au_thresholds") or "none"
    if rule == "none" or not au_names or not (run_dir / "checkpoint.pt").is_file():
        return
    if tcfg.get("train_on_val"):
        print("train.au_thresholds: not chosen, the validation part was trained on (train_on_val); "
              "every AU stays at 0.5", flush=True)
        return
    from train.au_thresholds import AuThresholdError, choose_for_run, summary_line

    try:
        print(summary_line(choose_for_run(run_dir / "checkpoint.pt", rule, run_dir)), flush=True)
    except AuThresholdError as exc:  # the trained run stands; its AUs read at 0.5
        print(f"train.au_thresholds: not chosen ({exc}); every AU stays at 0.5", flush=True)


def _set_backbone_trainable(model: AffectModel, trainable: bool, frozen_blocks: Sequence[nn.Module] = ()) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(trainable)
    for block in frozen_blocks:
        block.requires_grad_(False)


def _frozen_blocks(model: AffectModel, tcfg: dict) -> list[nn.Module]:
    n = int(tcfg.get("freeze_blocks") or 0)
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


def _build_ema(core_model: nn.Module, decay) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the weights and BatchNorm statistics,
    or None when `train.ema` is off (the value is checked by train.config)."""
    if decay is None or decay is False:
        return None
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
