"""Temperature scaling (Guo et al. 2017): one positive scalar T that divides the
expression logits before the softmax, fitted to minimise the negative
log-likelihood of held-aside labelled faces. It changes no prediction (the
argmax is the same) and only the confidence, so accuracy and F1 are untouched.

Each evaluation part is a dataset with its own class set (RAF-DB and FER2013
have no Contempt): its NLL is taken over the softmax restricted to the classes
it can have, exactly as `affect.metrics.restrict_classes` scores it. The parts
weigh equally in the objective (each is reported on its own), so the largest
part does not decide the temperature alone. scipy's bounded scalar minimiser
on log T does the search (library first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

T_BOUNDS = (0.05, 20.0)


@dataclass
class CalibrationPart:
    """Logits (or log-probabilities: the same up to a per-row constant) [N, C] of
    one evaluation part, its true class indices [N] (-1 = none) into the same C
    columns, and the columns the part can have (None = all)."""
    name: str
    logits: np.ndarray
    y: np.ndarray
    columns: Sequence[int] | None = None

    def restricted(self) -> tuple[np.ndarray, np.ndarray]:
        """(logits over the part's columns, labels re-indexed into them), labelled rows only."""
        logits, y = np.asarray(self.logits, np.float64), np.asarray(self.y, np.int64)
        keep = y >= 0
        logits, y = logits[keep], y[keep]
        if self.columns is None:
            return logits, y
        cols = list(self.columns)
        index = np.full(logits.shape[1], -1, np.int64)
        index[cols] = np.arange(len(cols))
        y = index[y]
        if (y < 0).any():
            raise ValueError(f"{self.name}: faces labelled with a class outside the part's columns")
        return logits[:, cols], y


def part_nll(part: CalibrationPart, temperature: float) -> float:
    """Mean −log p(true class) of the part at `temperature`."""
    logits, y = part.restricted()
    if y.size == 0:
        return math.nan
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(y.size), y].mean())


def fit_temperature(parts: Sequence[CalibrationPart], bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T in `bounds` minimising the mean over parts of each part's NLL."""
    data = [p.restricted() for p in parts]
    data = [(logits, y) for logits, y in data if y.size]
    if not data:
        raise ValueError("no labelled faces to fit a temperature on")

    def objective(log_t: float) -> float:
        t = math.exp(log_t)
        return float(np.mean([-log_softmax(logits / t, axis=1)[np.arange(y.size), y].mean()
                              for logits, y in data]))

    result = minimize_scalar(objective, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))
