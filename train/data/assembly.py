"""A run's data, assembled from its config (the steps `train.fit.fit` takes before
the model): every dataset loaded and split by its role into `Splits` of `Part`s
(`build_splits`), the attachments each face needs (`attach_run_blendshapes`,
`attach_run_teacher`, `attach_va_prior`: explicit steps of `fit`), and the torch datasets mixed
from the parts (`make_dataset`).

Names: `cfg` is the whole run config, `entry` one of its `data.datasets`,
`data_cfg` its `data` section, `distill_cfg` its `distill` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from affect.datasets.loaders import load_dataset
from train import data as tdata
from train.config import ConfigError, check_dataset_entry
from train.errors import TrainError

# --- splits ----------------------------------------------------------------------------------------------

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
    for entry in cfg["data"]["datasets"]:
        try:
            check_dataset_entry(entry)
        except ConfigError as exc:
            raise TrainError(str(exc)) from None
    for entry in cfg["data"]["datasets"]:
        info = load_dataset(entry, labels=labels)
        out.infos.append(info)
        for name in info.au_names:
            if name not in out.au_names:
                out.au_names.append(name)
    for entry, info in zip(cfg["data"]["datasets"], out.infos):
        role = entry.get("role", "auto")
        samples = tdata.remap_labels(info.samples, info.label_set, labels)
        if out.au_names:
            samples = tdata.align_aus(samples, info.au_names, out.au_names)
        if not samples:
            raise TrainError(f"{entry.get('root')}: no samples with the run's labels {labels}")
        mask = info.class_mask(labels)
        keep = float(entry.get("train_fraction", 1.0))
        if role == "auto":
            fractions = tuple(entry.get("fractions") or split_cfg.get("fractions", (0.64, 0.16, 0.20)))
            seed = int(split_cfg.get("seed", cfg["seed"]))
            if split_cfg.get("method", "stratified") == "subject" and any(s.subject for s in samples):
                parts = tdata.split_by_subject(samples, fractions=fractions, seed=seed)
            else:
                parts = tdata.split_stratified(samples, fractions=fractions, seed=seed)
        else:  # train, val or test (checked above)
            parts = tuple(samples if role == r else [] for r in ("train", "val", "test"))
        seed = int(split_cfg.get("seed", cfg["seed"]))
        smoothing = None if entry.get("label_smoothing") is None else float(entry["label_smoothing"])
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


def attach_va_prior(parts: list[Part], labels: list[str]) -> dict[str, int]:
    """Give each training face that lacks valence/arousal but has an expression label
    (a FER+ vote distribution: the votes' mixture) the mean valence/arousal of its class
    over the training faces that have both (`Sample.va_prior`; faces with their own keep
    None). A class no such face has gets none. Training parts only: the means never see
    validation or held-out faces."""
    samples = [s for p in parts for s in p.samples]
    with_va = [s for s in samples if s.expression >= 0 and np.isfinite([s.valence, s.arousal]).all()]
    if not with_va:
        raise TrainError("loss.va_prior: no training face has both an expression label and valence/arousal")
    y = np.array([s.expression for s in with_va])
    va = np.array([[s.valence, s.arousal] for s in with_va], np.float64)
    means = np.full((len(labels), 2), np.nan)
    for c in np.unique(y):
        means[c] = va[y == c].mean(axis=0)
    given = 0
    for s in samples:
        if np.isfinite([s.valence, s.arousal]).any():
            continue
        if s.soft is not None:
            w = np.asarray(s.soft, np.float64)
            known = np.isfinite(means[:, 0]) & (w > 0)
            prior = (w[known] @ means[known]) / w[known].sum() if known.any() else None
        elif s.expression >= 0 and np.isfinite(means[s.expression]).all():
            prior = means[s.expression]
        else:
            prior = None
        s.va_prior = None if prior is None else np.asarray(prior, np.float32)
        given += prior is not None
    return {"faces": len(samples), "prior": given, "own": len(with_va)}


def make_dataset(parts: list[Part], cfg: dict, size: int, mean, std, au_names: list[str], train: bool,
                 blendshapes: list[str] | tuple[str, ...] = (), progress: bool = True):
    """One AffectDataset per dataset part (each keeps its class mask), mixed;
    training items carry the teacher's outputs when `distill.teacher` is set."""
    teacher = train and bool((cfg.get("distill") or {}).get("teacher"))
    va_prior = train and float(cfg["loss"].get("va_prior") or 0.0) > 0
    aug = tdata.AugmentConfig.from_dict(cfg["data"]["augment"]) if train else None
    dropout = float(cfg["data"].get("blendshape_dropout") or 0.0) if train else 0.0
    return tdata.MixedDataset([
        tdata.AffectDataset(p.samples, size=size, mean=mean, std=std, labels=cfg["labels"], augment=aug,
                            num_landmarks=cfg["model"]["num_landmarks"], au_names=au_names,
                            class_mask=p.class_mask, blendshapes=blendshapes, blendshape_dropout=dropout,
                            teacher=teacher, label_smoothing=p.label_smoothing, va_prior=va_prior,
                            cache=_crop_cache(p, cfg, size, progress))
        for p in parts])


def _crop_cache(part: Part, cfg: dict, size: int, progress: bool):
    """The part's decoded crops (train.data.crop_cache) when `data.cache` is on, else None."""
    data_cfg = cfg["data"]
    if not data_cfg.get("cache"):
        return None
    from affect.files import cache_root
    from train.data.crop_cache import build_crop_cache

    root = data_cfg.get("cache_dir") or cache_root("crops")
    return build_crop_cache(part.samples, size, root, f"{part.info.name}-{part.split}", progress=progress)


def blendshape_names(mcfg: dict) -> tuple[str, ...]:
    """The blendshape input's names for `model.blendshapes` (true: MediaPipe's 52; the value is
    checked by train.config.check_config)."""
    from affect.blendshapes import MEDIAPIPE_BLENDSHAPES

    return MEDIAPIPE_BLENDSHAPES if mcfg.get("blendshapes") in (True, "mediapipe") else ()


def attach_run_blendshapes(parts: list[Part], cfg: dict, names: tuple[str, ...], progress: bool = True) -> None:
    """Compute (or read from the cache) every sample's blendshapes (`progress`: bars and a summary line)."""
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.face_model import FaceModelError, resolve_face_model

    try:
        face_model = resolve_face_model(cfg["model"].get("face_model"))
    except FaceModelError as exc:
        raise TrainError(f"model.blendshapes needs the MediaPipe face model (--set model.face_model=PATH): {exc}"
                         ) from None
    samples = [s for p in parts for s in p.samples]
    counts = attach_blendshapes(samples, names, face_model, cfg["data"].get("blendshape_cache"),
                                progress=progress)
    if progress:
        print(f"blendshapes: faces found in {counts['found']} of {counts['faces']} training/validation "
              f"samples ({counts['computed']} computed, the rest from the cache)", flush=True)


def attach_run_teacher(parts: list[Part], cfg: dict, bs_names: tuple[str, ...], progress: bool = True) -> None:
    """The teacher's outputs for every training sample (computed once, cached)."""
    from train.distill import DistillError, attach_teacher

    distill_cfg = cfg["distill"]  # its numbers are checked by train.config.check_config
    try:
        counts = attach_teacher([s for p in parts for s in p.samples], distill_cfg["teacher"], cfg["labels"],
                                blendshapes=bs_names, cache_dir=distill_cfg.get("cache"), progress=progress)
    except DistillError as exc:
        raise TrainError(f"distill.teacher: {exc}") from None
    if progress:
        print(f"distill: teacher {distill_cfg['teacher']} labelled {counts['faces']} training faces "
              f"({counts['computed']} computed, the rest from the cache)", flush=True)
