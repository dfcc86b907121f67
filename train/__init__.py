"""Training: datasets, models, the fit loop, evaluation and reports (`python -m train`)."""

import sys

# Modules of the `train` extra (pyproject.toml). A plain `pip install affectcam` (camera and
# dashboard) leaves them out, so the commands that need them say so in one line.
TRAIN_EXTRA = frozenset({"torch", "torchvision", "tensorboard"})


def exit_for_missing_extra(exc: ModuleNotFoundError, command: str) -> int:
    """For a command's `except ModuleNotFoundError`: one line naming the `train` extra
    and exit status 2 when the missing module is one of its, else re-raise."""
    if exc.name not in TRAIN_EXTRA:
        raise exc
    print(f"error: {command} needs {exc.name}, which is not installed: pip install 'affectcam[train]'",
          file=sys.stderr)
    return 2
