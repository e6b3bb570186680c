"""Statistics over seeds and cells (numpy and scipy only: no ray, no torch).

:func:`t_interval` is the Student t interval of a mean used by the best-response gain
(:mod:`agents.exploit`) and the result analyses (:mod:`experiments.result_b`,
:mod:`experiments.result_c`, through :func:`mean_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Student t interval of a mean: mean +- t_{(1+confidence)/2, n-1} * sd / sqrt(n)."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float


def t_interval(values: Sequence[float], confidence: float) -> Interval:
    """The t interval of the mean of ``values`` (NaN bounds with fewer than 2 values)."""
    from scipy import stats

    x = np.asarray([v for v in values if np.isfinite(v)], float)
    n = len(x)
    if n == 0:
        return Interval(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(x.mean())
    if n < 2:
        return Interval(1, mean, float("nan"), float("nan"), float("nan"))
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * sd / np.sqrt(n))
    return Interval(n, mean, sd, mean - half, mean + half)


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of :func:`t_interval` over ``values`` (``None`` and NaN dropped): one
    value gives the interval (nan, nan); none gives all nan."""
    iv = t_interval([v for v in values if v is not None], level)
    return iv.mean, iv.lo, iv.hi
