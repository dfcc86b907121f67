"""The error of a training run that cannot start or go on: bad data, an empty split,
an unknown option (`python -m train fit` prints its one line)."""


class TrainError(ValueError):
    """A run that cannot start: bad data, empty split, unknown option."""
