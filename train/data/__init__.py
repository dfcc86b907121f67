"""Datasets for training: label remapping, splits, the torch `AffectDataset`
(item dict of docs/ARCHITECTURE.md), augmentation, mixing and sampling, and
the assembly of a run's parts (`train.data.assembly`).

The readers below them (`Sample`, `DatasetInfo`, `DataError`, the loaders,
the evaluation crop, blendshapes, a run folder's splits) are torch-free and
live in `affect.datasets`, which `export` reads too. The torch parts here
(`dataset`, `sampling`) load on first use."""

import importlib

from train.data.augment import FLIP_68, AugmentConfig, augment_image
from train.data.relabel import align_aus, label_index_map, remap_labels
from train.data.splits import split_by_subject, split_stratified

__all__ = [
    "FLIP_68", "AffectDataset", "AugmentConfig", "MixedDataset", "align_aus", "augment_image", "build_sampler",
    "class_weights", "collate_skip_bad", "label_index_map", "remap_labels", "sample_weights", "split_by_subject",
    "split_stratified",
]

_TORCH_PARTS = {
    "AffectDataset": "dataset", "MixedDataset": "dataset", "collate_skip_bad": "dataset",
    "build_sampler": "sampling", "class_weights": "sampling", "sample_weights": "sampling",
}


def __getattr__(name: str):
    if name in _TORCH_PARTS:
        return getattr(importlib.import_module(f"train.data.{_TORCH_PARTS[name]}"), name)
    raise AttributeError(f"module 'train.data' has no attribute {name!r}")
