"""Per-track smoothing of the model's readings.

Expression probabilities: an exponential moving average (a label should not
flicker between two classes frame to frame). Valence/arousal: the One-Euro
filter (Casiez et al., CHI 2012), which smooths hard when the point is still
and follows quickly when it moves — the trade-off a live plot needs. Both are
configurable and can be switched off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from affect.checks import is_finite, require


@dataclass
class SmoothingOptions:
    ema: bool = True
    ema_alpha: float = 0.4  # weight of the newest frame (1 = no smoothing)
    one_euro: bool = True
    min_cutoff: float = 1.0  # Hz: lower = smoother when still
    beta: float = 0.5  # speed coefficient: higher = less lag when moving
    d_cutoff: float = 1.0  # Hz, for the derivative estimate

    def __post_init__(self) -> None:
        require(is_finite(self.ema_alpha) and 0 < self.ema_alpha <= 1, self, "ema_alpha", "must be in (0, 1]")
        for name in ("min_cutoff", "d_cutoff"):
            require(is_finite(getattr(self, name)) and getattr(self, name) > 0, self, name,
                    "must be a finite number above 0")
        require(is_finite(self.beta) and self.beta >= 0, self, "beta", "must be a finite number of at least 0")


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over a vector; `t` in seconds."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.t is None or t <= self.t:
            if self.x is None:
                self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return self.x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = 1.0 / (1.0 + (1.0 / (2 * math.pi * cutoff)) / dt)
        self.x = self.x + a * (x - self.x)
        self.t = t
        return self.x.copy()


class EmaFilter:
    def __init__(self, alpha: float):
        if not 0 < alpha <= 1:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        self.value = x.copy() if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value.copy()


class TrackSmoother:
    """The smoothing state of one track."""

    def __init__(self, options: SmoothingOptions):
        self.options = options
        self.ema = EmaFilter(options.ema_alpha) if options.ema else None
        self.euro = OneEuroFilter(options.min_cutoff, options.beta, options.d_cutoff) if options.one_euro else None

    def update(self, probs: np.ndarray, va: np.ndarray, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        p = self.ema(probs) if self.ema else np.asarray(probs, np.float64)
        p = p / max(p.sum(), 1e-12)
        v = self.euro(va, t_s) if self.euro else np.asarray(va, np.float64)
        return p, np.clip(v, -1.0, 1.0)
