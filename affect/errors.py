"""Error text every room shows the same way: an exception's first line, and the
one line that names the `train` extra when one of its modules is missing."""

from __future__ import annotations

import sys
import textwrap

# Modules of the `train` extra (pyproject.toml). A plain `pip install affectcam` (camera and
# dashboard) leaves them out, so the commands that need them say so in one line.
TRAIN_EXTRA = frozenset({"torch", "torchvision", "tensorboard"})


def first_line(exc: BaseException, width: int | None = 160) -> str:
    """An exception's first line (its type's name when it has no text), shortened
    at a word boundary to `width` characters (None: not shortened)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if width is None else textwrap.shorten(line, width=width, placeholder=" …")


def exit_for_missing_extra(exc: ModuleNotFoundError, command: str) -> int:
    """For a command's `except ModuleNotFoundError`: one line naming the `train` extra
    and exit status 2 when the missing module is one of its, else re-raise."""
    if exc.name not in TRAIN_EXTRA:
        raise exc
    print(f"error: {command} needs {exc.name}, which is not installed: pip install 'affectcam[train]'",
          file=sys.stderr)
    return 2
