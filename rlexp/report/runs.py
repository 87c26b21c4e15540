"""Reading a sweep's runs back from their directories (metrics.json, config.yaml, the eval
curve in the event file) and grouping them by their overrides, seeds pooled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlexp import rundir
from rlexp.metrics import read_metrics
from rlexp.report.statistics import Stats

EVAL_TAG = "eval/return_mean"


@dataclass
class Run:
    dir: Path
    overrides: list[str]
    status: str  # metrics.json's status, or "unfinished" when there is none
    error: str | None
    final_return: float | None
    target: float | None
    eval_curve: list[tuple[int, float]]
    #: The run's config.yaml, flattened ({} where it has none): the figures' titles and the
    #: sweep's HParams experiment read it.
    config: dict[str, Any] = field(default_factory=dict)
    #: The scalar tags of its event file.
    scalar_tags: list[str] = field(default_factory=list)

    @property
    def env_id(self) -> str | None:
        return self.config.get("env.id")

    @property
    def agent(self) -> str | None:
        return self.config.get("agent.name")

    @property
    def steps_to_target(self) -> int | None:
        if self.target is None:
            return None
        return next((step for step, value in self.eval_curve if value >= self.target), None)

    def holds_target(self, last: int) -> bool | None:
        """Whether the mean of the last ``last`` evaluations is >= the target (``last=1``:
        the final one): a result that holds at the end of the budget, not a lucky peak."""
        if self.target is None or not self.eval_curve:
            return None
        return float(np.mean([v for _, v in self.eval_curve[-last:]])) >= self.target


def _read_events(run_dir: Path) -> tuple[list[tuple[int, float]], list[str]]:
    """The eval-return curve of a run's event file, and its scalar tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found after ..."
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    curve = [(e.step, e.value) for e in acc.Scalars(EVAL_TAG)] if EVAL_TAG in tags else []
    return curve, tags


def _job_runs(job_dir: Path) -> list[Path]:
    """A job's runs: its ``seed<N>/`` directories when it trained several seeds, else itself."""
    return rundir.seed_dirs(job_dir) or [job_dir]


def load_runs(sweep_dir: Path, target: float | None = None) -> list[Run]:
    """Every run of a sweep: the directories Hydra made for its jobs (with ``.hydra/``), or the
    ``seed<N>/`` directories of a job that trained several seeds."""
    runs = []
    for hydra_dir in sorted(Path(sweep_dir).rglob(rundir.HYDRA)):
        job_dir = hydra_dir.parent
        if job_dir == Path(sweep_dir) or rundir.ATTEMPTS in job_dir.parts:
            continue
        overrides = rundir.launch_overrides(job_dir)
        for run_dir in _job_runs(job_dir):
            runs.append(_load_run(run_dir, overrides, target))
    return runs


def _load_run(run_dir: Path, overrides: list[str], target: float | None) -> Run:
    metrics = read_metrics(run_dir) if (run_dir / rundir.METRICS).exists() else {}
    config_file = run_dir / rundir.CONFIG
    raw = (yaml.safe_load(config_file.read_text()) or {}) if config_file.exists() else {}
    if target is None:
        target = (raw.get("env") or {}).get("solved_return")
    config = rundir.flatten(raw)  # (which writes null as "None": the target is read before)
    curve, tags = _read_events(run_dir)
    return Run(dir=run_dir, overrides=list(overrides),
               status=metrics.get("status", "unfinished"), error=metrics.get("error"),
               final_return=metrics.get("eval_return_mean"), target=target,
               eval_curve=curve, config=config, scalar_tags=tags)


def _is_seed(override: str) -> bool:
    return rundir.override_key(override) in ("seed", "seeds")


@dataclass
class Group:
    label: str
    runs: list[Run] = field(default_factory=list)
    #: The overrides that make the label (those not shared by every run of the sweep).
    overrides: tuple[str, ...] = ()
    #: returns(), once computed (its bootstraps are the costly part of a report).
    _returns: Stats | None = field(default=None, repr=False, compare=False)

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "completed"]

    @property
    def final_returns(self) -> list[float]:
        return [r.final_return for r in self.completed]

    def returns(self) -> Stats:
        if self._returns is None:
            self._returns = Stats.of(self.final_returns)
        return self._returns

    def holding(self, last: int) -> int:
        """Completed runs whose last ``last`` evaluations average at least the target."""
        return sum(bool(r.holds_target(last)) for r in self.completed)

    def steps(self) -> Stats:
        return Stats.of([r.steps_to_target for r in self.completed
                         if r.steps_to_target is not None])

    @property
    def target(self) -> float | None:
        return next((r.target for r in self.runs if r.target is not None), None)


def group_runs(runs: list[Run], ignore: set[str] = frozenset()) -> list[Group]:
    """Runs grouped by their overrides minus ``seed=`` (and those of the keys ``ignore``, e.g.
    the task's, across tasks); overrides shared by every run of the sweep are left out of the
    labels."""
    keys = {id(r): tuple(sorted(o for o in r.overrides if not _is_seed(o)
                                and rundir.override_key(o) not in ignore)) for r in runs}
    shared = set.intersection(*(set(k) for k in keys.values())) if runs else set()
    groups: dict[str, Group] = {}
    for run in runs:
        own = tuple(o for o in keys[id(run)] if o not in shared)
        label = ",".join(own) or "all runs"
        groups.setdefault(label, Group(label, overrides=own)).runs.append(run)
    return list(groups.values())
