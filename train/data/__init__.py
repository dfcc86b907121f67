"""Datasets for training: loaders into `Sample` records, label remapping,
splits, the torch `AffectDataset` (item dict of docs/ARCHITECTURE.md),
augmentation, mixing and sampling."""

from train.data.augment import FLIP_68, AugmentConfig, augment_image
from train.data.dataset import (
    AffectDataset,
    MixedDataset,
    UnreadableImage,
    collate_skip_bad,
    eval_crop,
    read_image,
)
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
from train.data.sampling import build_sampler, class_weights, sample_weights
from train.data.splits import split_by_subject, split_stratified

__all__ = [
    "FLIP_68", "AffectDataset", "AugmentConfig", "DataError", "DatasetInfo", "MixedDataset", "Sample",
    "UnreadableImage", "align_aus", "augment_image", "build_sampler", "class_weights", "collate_skip_bad",
    "eval_crop", "label_index_map", "label_members", "load_affectnet", "load_affectnet_csv", "load_ckplus",
    "load_class_folders", "load_dataset", "load_fer2013_csv", "load_fer2013_folders", "read_image",
    "remap_labels", "sample_weights", "split_by_subject", "split_stratified",
]
