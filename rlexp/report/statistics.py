"""The statistics of a sweep's report, with SciPy's estimators: the interquartile mean, bootstrap
confidence intervals and the probability of improvement (as rliable, Agarwal et al. 2021,
computes them for one task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000






def iqm(x, axis: int = -1):
    """Interquartile mean along ``axis``: drop the lowest and highest int(n/4) values, average
    the rest (vectorized, so it is a statistic ``bootstrap_ci`` takes too)."""
    from scipy.stats import trim_mean

    x = np.asarray(x, dtype=float)
    return trim_mean(x, 0.25, axis=axis) if x.size else math.nan


def bootstrap_ci(x, statistic=np.mean, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic`` (vectorized, with an ``axis``
    argument) over the runs (deterministic: a fixed seed). With one task, rliable's stratified
    bootstrap is this one."""
    from scipy.stats import bootstrap

    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1 or np.all(x == x[0]):  # nothing to resample
        return float(x[0]), float(x[0])
    ci = bootstrap((x,), statistic, n_resamples=samples, confidence_level=level,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def probability_of_improvement(x, y) -> float:
    """P(X > Y): the chance that a run of configuration X ends higher than one of Y, ties
    counting half (the Mann-Whitney U statistic over the number of pairs)."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(x) or not len(y):
        return math.nan
    return float(mannwhitneyu(x, y).statistic) / (len(x) * len(y))


@dataclass
class Stats:
    n: int
    mean: float
    std: float  # sample std (ddof=1); nan for a single value
    iqm: float
    ci_low: float  # of the mean
    ci_high: float
    iqm_ci_low: float
    iqm_ci_high: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        x = np.asarray(values, dtype=float)
        n = len(x)
        ci_low, ci_high = bootstrap_ci(x)
        iqm_low, iqm_high = bootstrap_ci(x, iqm)
        return cls(n=n, mean=float(x.mean()) if n else math.nan,
                   std=float(x.std(ddof=1)) if n > 1 else math.nan, iqm=float(iqm(x)),
                   ci_low=ci_low, ci_high=ci_high, iqm_ci_low=iqm_low, iqm_ci_high=iqm_high)
