"""Statistics across tasks (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"), as rliable computes them, on normalized scores.

A group's scores are one array of runs' normalized scores per task (tasks may have different
numbers of runs). Every interval is a 95% percentile interval of a stratified bootstrap: each
resample draws, within each task, as many runs as the task has, with replacement, so a task's
share of the study never changes and a task with one run keeps its score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: Bootstrap resamples of every interval.
RESAMPLES = 10_000
LEVEL = 0.95

Scores = Sequence[np.ndarray]  # one 1-D array of runs' normalized scores per task


def _iqm(runs: np.ndarray) -> np.ndarray:
    from scipy.stats import trim_mean

    return trim_mean(runs, 0.25, axis=-1)


def _per_task_means(tasks: Scores) -> np.ndarray:
    return np.stack([t.mean(axis=-1) for t in tasks], axis=-1)


#: Each metric of a (possibly resampled: ``[resamples, runs]`` per task) set of scores.
METRICS: dict[str, Callable[[Scores], np.ndarray]] = {
    # the mean of the middle 50% of all runs of all tasks
    "iqm": lambda tasks: _iqm(np.concatenate(tasks, axis=-1)),
    # the median over tasks of each task's mean over runs
    "median": lambda tasks: np.median(_per_task_means(tasks), axis=-1),
    # the mean over tasks of each task's mean over runs
    "mean": lambda tasks: _per_task_means(tasks).mean(axis=-1),
    # how far the runs fall short of the reference (normalized 1), on average
    "optimality_gap": lambda tasks: 1.0 - np.minimum(np.concatenate(tasks, axis=-1),
                                                     1.0).mean(axis=-1),
}


def _resampled(tasks: Scores, rng: np.random.Generator, resamples: int) -> list[np.ndarray]:
    """Each task's runs resampled within the task: ``[resamples, runs]`` per task."""
    return [t[rng.integers(len(t), size=(resamples, len(t)))] for t in tasks]


def _interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def _checked(tasks: Scores) -> list[np.ndarray]:
    tasks = [np.asarray(t, dtype=float) for t in tasks]
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("every task needs at least one run's score")
    return tasks


def aggregate(metric: str, tasks: Scores, resamples: int = RESAMPLES, seed: int = 0
              ) -> tuple[float, float, float]:
    """``metric`` (a key of METRICS) of the scores, with its stratified bootstrap interval:
    (value, low, high)."""
    tasks = _checked(tasks)
    fn = METRICS[metric]
    boot = fn(_resampled(tasks, np.random.default_rng(seed), resamples))
    return (float(fn(tasks)), *_interval(boot))


def _improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> np.ndarray:
    """P(X > Y) (ties half) averaged over tasks, of ``[..., runs]`` arrays per task."""
    per_task = []
    for a, b in zip(x, y, strict=True):
        diff = a[..., :, None] - b[..., None, :]
        per_task.append(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1)))
    return np.mean(per_task, axis=0)


def probability_of_improvement(x: Scores, y: Scores, resamples: int = RESAMPLES, seed: int = 0
                               ) -> tuple[float, float, float]:
    """The probability that a run of X scores higher than a run of Y on the same task, averaged
    over the tasks (ties count half), with its interval: X's and Y's runs resampled
    independently within each task. ``x`` and ``y`` list the same tasks in the same order."""
    x, y = _checked(x), _checked(y)
    rng = np.random.default_rng(seed)
    boot = _improvement(_resampled(x, rng, resamples), _resampled(y, rng, resamples))
    return (float(_improvement(x, y)), *_interval(boot))


def performance_profile(tasks: Scores, taus: np.ndarray, resamples: int = RESAMPLES,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fraction of runs scoring above each tau (each task weighing the same: the mean over
    tasks of the task's fraction), with its pointwise interval: (profile, low, high)."""
    tasks = _checked(tasks)

    def profile(per_task: Sequence[np.ndarray]) -> np.ndarray:
        return np.mean([(t[..., None] > taus).mean(axis=-2) for t in per_task], axis=0)

    boot = profile(_resampled(tasks, np.random.default_rng(seed), resamples))
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail], axis=0)
    return profile(tasks), low, high
