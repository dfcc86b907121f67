"""Options checked once, where they are made: each options dataclass calls
these from `__post_init__`, so a bad value is refused at construction with one
line naming the option (`FaceFindingOptions.max_faces 0: must be a whole number
of at least 1`), and a command line maps the option to its flag."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any


class OptionError(ValueError):
    """An option value the run cannot use. `option` is `Class.field`, `value` the
    value given, `problem` what is wrong, without the name (for a CLI to reword)."""

    def __init__(self, option: str, value: Any, problem: str):
        self.option, self.value, self.problem = option, value, problem
        super().__init__(f"{option} {value}: {problem}")


def require(ok: bool, owner: object, name: str, problem: str) -> None:
    """Raise OptionError for `owner.name` unless `ok`."""
    if not ok:
        raise OptionError(f"{type(owner).__name__}.{name}", getattr(owner, name), problem)


def is_whole(value: Any, low: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= low


def is_finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def whole_at_least(owner: object, name: str, low: int, optional: bool = False) -> None:
    value = getattr(owner, name)
    if optional and value is None:
        return
    require(is_whole(value, low), owner, name, f"must be a whole number of at least {low}")
