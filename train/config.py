"""Run configuration: defaults ← YAML file ← `--set key.path=value` overrides.

The resolved config is written into every run directory, so a run can be
reproduced (and resumed) from its own folder.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from affect.errors import first_line
from affect.labels import EXPRESSIONS


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


DEFAULTS: dict[str, Any] = {
    "name": "run",
    "run_dir": None,  # default: runs/<name>
    "seed": 0,
    "labels": list(EXPRESSIONS),
    "model": {
        "backbone": "mobilenet_v2", "pretrained": "auto", "input_size": None,
        "hidden": 512, "dropout": 0.3, "num_landmarks": 0, "num_aus": 0,
        # also take MediaPipe's 52 face blendshapes as a second input (computed for every
        # training face with the landmarker, cached); face_model: null = the camera's resolution
        # (--face-model, $AFFECTCAM_FACE_MODEL, user cache, download)
        "blendshapes": False, "face_model": None,
        "blendshape_standardise": False,  # scale each score by the training faces' mean and spread
    },
    "data": {
        # each: {type, root, weight, role: auto|train|val|test, fractions (its own split), limit,
        # train_fraction, usage, mapping, ferplus, label_smoothing (its own; noisy labels)}
        "datasets": [{"type": "affectnet", "root": "../shared/data/affectnet"}],
        "split": {"method": "stratified", "fractions": [0.64, 0.16, 0.20], "seed": 0},
        "balance": "none",  # none | loss_weights | oversample
        "augment": {"hflip": 0.5, "rotation": 10.0, "scale": 0.1, "shift": 0.05,
                    "brightness": 0.2, "contrast": 0.2, "blur": 0.0, "noise": 0.0,
                    "erasing": 0.25, "greyscale": 0.0},
        "num_workers": 2,
        "blendshape_dropout": 0.2,  # share of training draws shown without blendshapes
        "blendshape_cache": None,  # default ~/.cache/affectcam/blendshapes
        # decode + crop + resize every face once into a uint8 array (invalidated when a source
        # file changes); epochs then read it instead of the JPEGs
        "cache": False, "cache_dir": None,  # default <cache root>/crops ($AFFECTCAM_CACHE or ~/.cache/affectcam)
    },
    "train": {
        "epochs": 10, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "backbone_lr_mult": 0.1,
        "weight_decay": 1e-4, "momentum": 0.9, "scheduler": "cosine", "warmup_epochs": 1,
        "plateau_factor": 0.5, "plateau_patience": 5,
        "freeze_backbone": False, "unfreeze_after": None,
        # the first N blocks of the backbone keep their ImageNet weights and BatchNorm statistics:
        # no backward pass through the high-resolution stem (MobileNetV2: 4 blocks ≈ 25 % of a CPU step)
        "freeze_blocks": 0,
        # NHWC tensors: oneDNN's depthwise convolutions run ~1.5x faster per CPU training step
        "channels_last": True,
        "early_stopping_metric": "score", "early_stopping_patience": None,
        "grad_clip": 5.0, "label_smoothing": 0.1, "l1": 0.0, "max_steps": None, "amp": "auto",
        "eval_tta": False, "threads": None,
        # draws per epoch from the (weighted) training mix; None: one pass over every training sample
        "samples_per_epoch": None,
        # exponential moving average of the weights (decay per step, e.g. 0.998); the averaged
        # model is the one evaluated and saved. None: off
        "ema": None,
        # also train on the validation part (a final model once the recipe is chosen on val):
        # the checkpoint is then the last epoch's, and validation metrics are on seen data
        "train_on_val": False,
        "stop_when": {},  # e.g. {accuracy: 0.9}: stop once a validation metric reaches a target
        # per-AU decision thresholds chosen on the validation part once the run ends and stored in
        # checkpoint.pt (`train.au_thresholds`): f1 or balanced_accuracy (what each AU's threshold
        # maximises); none: every AU present at probability 0.5
        "au_thresholds": "none",
    },
    # learn also from a trained model's outputs (train.distill): teacher = an .onnx/.pt with the
    # run's labels (e.g. the graph averaging several fits); weight: soft-label KL at temperature;
    # va_weight: its valence/arousal on faces that have none (FER2013). cache: default
    # ~/.cache/affectcam/teacher
    "distill": {"teacher": None, "weight": 1.0, "temperature": 2.0, "va_weight": 0.5, "cache": None},
    "loss": {
        "expression": 1.0, "va": 1.0, "va_loss": "ccc+mse", "landmarks": 1.0, "landmark_loss": "l1",
        "aus": 1.0,
        # > 0: faces without valence/arousal but with an expression label learn the mean valence/arousal
        # of their class over the run's training faces that have both (`train.fit.attach_va_prior`),
        # at this weight (a pseudo-label; 0 = off).
        "va_prior": 0.0,
        "au_pos_weight": "none",  # balanced: each AU's positives weigh (absent / present), capped at 10; sqrt: its root
    },
}


def deep_update(base: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_path(cfg: dict, keys: list[str], value: Any) -> None:
    """Set `cfg[k0][k1]…` to `value`; a number indexes a list (`data.datasets.1.weight=0.5`)."""
    node: Any = cfg
    for depth, k in enumerate(keys[:-1]):
        if isinstance(node, list):
            node = _list_item(node, k, keys)
            continue
        if not isinstance(node.get(k), (dict, list)) or (
                isinstance(node.get(k), list) and depth == len(keys) - 2):
            raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not a section")
        node = node[k]
    if isinstance(node, list):
        raise ConfigError(f"override {'.'.join(keys)}: name a key of the list item, e.g. "
                          f"{'.'.join(keys)}.weight")
    if keys[-1] not in node and node is not cfg and not _is_dataset_entry(node):
        known = ", ".join(sorted(node))
        raise ConfigError(f"unknown config key {'.'.join(keys)!r} (known here: {known})")
    node[keys[-1]] = value


def _list_item(items: list, key: str, keys: list[str]) -> dict:
    if not key.isdigit() or int(key) >= len(items) or not isinstance(items[int(key)], dict):
        raise ConfigError(f"override {'.'.join(keys)}: {key!r} is not an entry of that list "
                          f"(0-{len(items) - 1})")
    return items[int(key)]


def _is_dataset_entry(node: dict) -> bool:
    """A data.datasets entry takes any of the loader's keys, checked when it is loaded."""
    return "type" in node and "root" in node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({first_line(exc)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
        for key in unknown_keys(loaded, DEFAULTS):
            # The same rule as --set: a misspelt key would otherwise be trained without, silently.
            raise ConfigError(f"{path}: unknown config key {key!r} (known here: {_known_beside(key)})")
        deep_update(cfg, loaded)
        # Dataset roots are used as written: a relative one is relative to the working
        # directory (the checkout's root for configs/*.yaml), not to the config file.
    for item in overrides or []:
        keys, value = parse_override(item)
        set_path(cfg, keys, value)
    return cfg


# Sections whose keys are the user's to choose (checked where they are used).
FREE_SECTIONS = ("data.datasets", "train.stop_when")


def unknown_keys(loaded: dict, reference: dict, prefix: str = "") -> list[str]:
    """Dotted keys of `loaded` that `reference` (the defaults) does not have."""
    found = []
    for key, value in loaded.items():
        dotted = f"{prefix}{key}"
        if key not in reference:
            found.append(dotted)
        elif isinstance(value, dict) and isinstance(reference[key], dict) and dotted not in FREE_SECTIONS:
            found += unknown_keys(value, reference[key], dotted + ".")
    return found


def _known_beside(dotted: str) -> str:
    node: Any = DEFAULTS
    for k in dotted.split(".")[:-1]:
        node = node.get(k, {}) if isinstance(node, dict) else {}
    return ", ".join(sorted(node)) if isinstance(node, dict) else ""


def dump_config(cfg: dict, path: Path) -> None:
    from affect.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))


# Keys a started run may change on --resume: how long it goes on and how it is run,
# not what it learns from or how (those would make a different run under the old name).
RESUMABLE = ("train.epochs", "train.max_steps", "train.threads", "train.early_stopping_patience",
             "train.stop_when", "data.num_workers")


def _get_path(cfg: dict, keys: list[str]) -> Any:
    node: Any = cfg
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def resume_config(saved: dict, overrides: list[str]) -> tuple[dict, list[str]]:
    """The run's own config with the `overrides` given beside --resume applied,
    and a line per change; ConfigError for a change a started run cannot take
    (an override is applied or refused, never silently ignored)."""
    cfg = copy.deepcopy(saved)
    changed = []
    for item in overrides:
        keys, value = parse_override(item)
        name = ".".join(keys)
        old = _get_path(saved, keys)
        if old == value:
            continue
        if name not in RESUMABLE:
            raise ConfigError(f"--resume: {name} cannot change in a started run ({old!r} → {value!r}); "
                              f"start a new --run-dir for that (changeable on resume: {', '.join(RESUMABLE)})")
        set_path(cfg, keys, value)
        changed.append(f"{name} {old!r} → {value!r}")
    return cfg, changed


# --- checks: a config that cannot train fails before any data is read ----------------------------------

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "plateau", "none")
DATASET_ROLES = ("auto", "train", "val", "test")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


@dataclass(frozen=True)
class Rule:
    """What one config key takes: a kind ("int", "number", "bool", "str", "choice"), bounds
    (`low`/`high`, excluded when `open_low`/`open_high`), whether null is allowed."""
    kind: str
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    choices: tuple = ()
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind in ("int", "number"):
            text = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text += (f" in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                         f"{')' if self.open_high else ']'}")
            elif self.low is not None:
                text += f" {'>' if self.open_low else '≥'} {self.low:g}"
        else:
            text = {"bool": "true or false", "str": "a string"}[self.kind]
        return text + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False  # 1.5 epochs is not 1 epoch
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))


_INT0, _INT1, _NUM0 = Rule("int", 0), Rule("int", 1), Rule("number", 0)
_SHARE = Rule("number", 0, 1, open_high=True)
# One table of what each key takes, for the YAML file, --set and the flags alike (they all land in
# the one config that check_config reads). Keys not listed here have their own checks below or
# where they are used (datasets: their loaders).
SCHEMA: dict[str, Rule] = {
    "name": Rule("str"), "run_dir": Rule("str", nullable=True), "seed": _INT0,
    "model.backbone": Rule("str"), "model.pretrained": Rule("str", nullable=True),
    # Below 16 px no backbone has a feature map left; above 1024 a batch no longer fits in memory.
    "model.input_size": Rule("int", 16, 1024, nullable=True),
    "model.hidden": _INT1, "model.dropout": _SHARE, "model.num_landmarks": _INT0, "model.num_aus": _INT0,
    "model.face_model": Rule("str", nullable=True), "model.blendshape_standardise": Rule("bool"),
    "data.split.method": Rule("choice", choices=("stratified", "subject")), "data.split.seed": _INT0,
    "data.balance": Rule("choice", choices=("none", "loss_weights", "oversample")),
    "data.num_workers": _INT0, "data.blendshape_dropout": Rule("number", 0, 1),
    "data.blendshape_cache": Rule("str", nullable=True), "data.cache": Rule("bool"),
    "data.cache_dir": Rule("str", nullable=True),
    "train.epochs": _INT1, "train.batch_size": _INT1, "train.lr": Rule("number", 0, open_low=True),
    "train.backbone_lr_mult": _NUM0, "train.weight_decay": _NUM0, "train.momentum": Rule("number", 0, 1),
    "train.warmup_epochs": _NUM0, "train.plateau_factor": Rule("number", 0, 1, open_low=True, open_high=True),
    "train.plateau_patience": _INT0, "train.freeze_backbone": Rule("bool"),
    "train.unfreeze_after": Rule("int", 0, nullable=True), "train.channels_last": Rule("bool"),
    "train.early_stopping_metric": Rule("str", nullable=True),
    "train.early_stopping_patience": Rule("int", 1, nullable=True),
    "train.grad_clip": Rule("number", 0, nullable=True), "train.label_smoothing": _SHARE, "train.l1": _NUM0,
    "train.max_steps": Rule("int", 1, nullable=True), "train.amp": Rule("choice", choices=("auto", True, False)),
    "train.eval_tta": Rule("bool"), "train.threads": Rule("int", 1, nullable=True),
    "train.train_on_val": Rule("bool"),
    "train.au_thresholds": Rule("choice", choices=("none", "f1", "balanced_accuracy"), nullable=True),
    "distill.teacher": Rule("str", nullable=True), "distill.cache": Rule("str", nullable=True),
    "loss.expression": _NUM0, "loss.va": _NUM0, "loss.landmarks": _NUM0, "loss.aus": _NUM0,
    "loss.va_loss": Rule("choice", choices=("ccc", "mse", "ccc+mse")),
    "loss.landmark_loss": Rule("choice", choices=("l1", "l2")),
    "loss.au_pos_weight": Rule("choice", choices=("none", "sqrt", "balanced", False), nullable=True),
}
for _name in DEFAULTS["data"]["augment"]:
    SCHEMA[f"data.augment.{_name}"] = Rule("number", 0, 1) if _name in ("hflip", "erasing", "greyscale") else _NUM0


def _as_number(value: Any) -> Any:
    """PyYAML reads `1e-3` (no dot) as a string, in a file and in --set alike: a number is meant."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def check_schema(cfg: dict) -> None:
    """Every key of SCHEMA holds what it takes; ConfigError naming the key and what it takes."""
    for dotted, rule in SCHEMA.items():
        *parents, key = dotted.split(".")
        node: Any = cfg
        for k in parents:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            continue
        if rule.kind == "number":
            node[key] = _as_number(node[key])
        if not rule.accepts(node[key]):
            raise ConfigError(f"{dotted} must be {rule.describe()}, got {node[key]!r}")
    labels = cfg.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"labels must be a list of class names, got {labels!r}")
    fractions = (cfg.get("data", {}).get("split") or {}).get("fractions")
    if not isinstance(fractions, list) or not all(Rule("number", 0, 1).accepts(_as_number(f)) for f in fractions):
        raise ConfigError(f"data.split.fractions must be a list of numbers in [0, 1], got {fractions!r}")
    datasets = cfg.get("data", {}).get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(
            isinstance(d, dict) and "type" in d and "root" in d for d in datasets):
        raise ConfigError(f"data.datasets must be a list of entries with type and root, got {datasets!r}")


def check_config(cfg: dict) -> None:
    """ConfigError (one line, naming the key) for a value no run can use; the loaders
    check their own dataset keys when they read the data."""
    for section in ("model", "data", "train", "loss", "distill"):
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{section} must be a section (a mapping of keys), got {cfg.get(section)!r}")
    check_schema(cfg)
    tcfg, mcfg = cfg["train"], cfg["model"]
    draws = tcfg.get("samples_per_epoch")
    if draws is not None and (not isinstance(draws, int) or isinstance(draws, bool) or draws < 1):
        raise ConfigError(f"train.samples_per_epoch must be a positive whole number of draws, got {draws!r}")
    decay = tcfg.get("ema")
    if decay not in (None, False) and not (_is_number(decay) and 0.0 < float(decay) < 1.0):
        raise ConfigError(f"train.ema must be a decay between 0 and 1 (e.g. 0.998) or null, got {decay!r}")
    blocks = tcfg.get("freeze_blocks") or 0
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
        raise ConfigError(f"train.freeze_blocks must be a whole number of blocks (0: none), got {blocks!r}")
    if str(tcfg.get("optimizer")).lower() not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {tcfg.get('optimizer')!r}; choose {', '.join(OPTIMIZERS)}")
    if str(tcfg.get("scheduler") or "none").lower() not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {tcfg.get('scheduler')!r}; choose cosine, plateau or none")
    if mcfg.get("blendshapes") not in (None, False, "none", True, "mediapipe"):
        raise ConfigError(f"model.blendshapes must be true or false, got {mcfg.get('blendshapes')!r}")
    dcfg = cfg.get("distill") or {}
    if dcfg.get("teacher"):
        for key in ("weight", "temperature", "va_weight"):
            value = dcfg.get(key)
            if not _is_number(value) or value < 0 or (key == "temperature" and value == 0):
                raise ConfigError(f"distill.{key} must be a "
                                  f"{'positive' if key == 'temperature' else 'non-negative'} number, got {value!r}")
    prior = (cfg.get("loss") or {}).get("va_prior", 0.0)
    if not _is_number(prior) or prior < 0:
        raise ConfigError(f"loss.va_prior must be a non-negative number, got {prior!r}")
    for entry in cfg["data"]["datasets"]:
        check_dataset_entry(entry)


def check_dataset_entry(entry: dict) -> None:
    """The keys of a data.datasets entry that shape the run's splits (role, train_fraction,
    label_smoothing)."""
    root = entry.get("root")
    role = entry.get("role", "auto")
    if role not in DATASET_ROLES:
        raise ConfigError(f"dataset {root}: role must be auto/train/val/test, not {role!r}")
    keep = entry.get("train_fraction", 1.0)
    if not _is_number(keep) or not 0.0 < keep <= 1.0:
        raise ConfigError(f"dataset {root}: train_fraction must be a number in (0, 1], got {keep!r}")
    smoothing = entry.get("label_smoothing")
    if smoothing is not None and (not _is_number(smoothing) or not 0.0 <= smoothing < 1.0):
        raise ConfigError(f"dataset {root}: label_smoothing must be a number in [0, 1), got {smoothing!r}")
