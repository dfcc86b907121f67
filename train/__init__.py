"""Training: datasets, models, the fit loop, evaluation and reports (`python -m train`)."""

# Modules of the `train` extra (pyproject.toml). A plain `pip install affectcam` (camera and
# dashboard) leaves them out, so the commands that need them say so in one line.
TRAIN_EXTRA = frozenset({"torch", "torchvision", "tensorboard"})


def missing_extra_message(exc: ModuleNotFoundError, command: str) -> str | None:
    """The one-line error for a command that hit a missing `train`-extra module, else None."""
    if exc.name not in TRAIN_EXTRA:
        return None
    return f"error: {command} needs {exc.name}, which is not installed: pip install 'affectcam[train]'"
