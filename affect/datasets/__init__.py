"""Labelled face datasets, read without torch: what `train` fits and
evaluates on and what `export` calibrates and benchmarks on, so both rooms
read the same faces the same way.

- `records`: `Sample` (one face and its targets), `DatasetInfo`, `DataError`.
- `loaders`: one loader per on-disk layout and `load_dataset(cfg)`.
- `crops`: a sample's pixels and its deterministic evaluation crop.
- `blendshapes`: MediaPipe blendshapes per sample, cached.
- `runs`: a training run's config.yaml + splits.json (`read_run`).

The torch side (`AffectDataset`, samplers, augmentation, splits, assembly of a
run's parts) stays in `train.data`."""
