"""Datasets for training: loaders into `Sample` records, label remapping,
splits, the torch `AffectDataset` (item dict of docs/ARCHITECTURE.md),
augmentation, mixing and sampling.

The torch parts (`dataset`, `sampling`) load on first use, so the loaders
serve commands that have no torch (`python -m export bench --data DIR`)."""

import importlib

from train.data.augment import FLIP_68, AugmentConfig, augment_image
from train.data.loaders import (
    load_affectnet,
    load_affectnet_csv,
    load_ckplus,
    load_class_folders,
    load_dataset,
    load_fer2013_csv,
    load_fer2013_folders,
)
from train.data.records import DataError, DatasetInfo, Sample, label_members
from train.data.relabel import align_aus, label_index_map, remap_labels
from train.data.splits import split_by_subject, split_stratified

__all__ = [
    "FLIP_68", "AffectDataset", "AugmentConfig", "DataError", "DatasetInfo", "MixedDataset", "Sample",
    "UnreadableImage", "align_aus", "augment_image", "build_sampler", "class_weights", "collate_skip_bad",
    "eval_crop", "label_index_map", "label_members", "load_affectnet", "load_affectnet_csv", "load_ckplus",
    "load_class_folders", "load_dataset", "load_fer2013_csv", "load_fer2013_folders", "read_image",
    "remap_labels", "sample_weights", "split_by_subject", "split_stratified",
]

_TORCH_PARTS = {
    "AffectDataset": "dataset", "MixedDataset": "dataset", "UnreadableImage": "dataset",
    "collate_skip_bad": "dataset", "eval_crop": "dataset", "read_image": "dataset",
    "build_sampler": "sampling", "class_weights": "sampling", "sample_weights": "sampling",
}


def __getattr__(name: str):
    if name in _TORCH_PARTS:
        return getattr(importlib.import_module(f"train.data.{_TORCH_PARTS[name]}"), name)
    raise AttributeError(f"module 'train.data' has no attribute {name!r}")
