"""The cross-task report: runs of several tasks (a suite's, or any sweep over envs), their scores
normalized per task, and each configuration compared across the tasks (rlexp.report.aggregate).

Written next to the sweep's own report when its runs span more than one env id:
``scores.csv`` (one row per run), ``aggregate.csv`` (IQM, median, mean and optimality gap of
each group with 95% stratified bootstrap intervals), ``improvement.csv`` (the probability of
improvement of each group over each other), and the figures ``tasks_aggregate.png``,
``tasks_profile.png``, ``tasks_sample_efficiency.png`` and ``tasks_curves.png``.

A task's normalized score is ``(score - random) / (reference - random)``, with the random and
reference scores of ``reference_scores.csv`` (each with its source); a task without them is
left out of the aggregates, and the report says so.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rlexp import rundir
from rlexp.report.aggregate import METRICS, aggregate, probability_of_improvement
from rlexp.report.runs import Group, Run, group_runs
from rlexp.report.tables import _markdown_table, _text_table, write_csv

SCORES_CSV, AGGREGATE_CSV, IMPROVEMENT_CSV = "scores.csv", "aggregate.csv", "improvement.csv"
SCORE_COLUMNS = ("group", "task", "seed", "final_return", "normalized")
AGGREGATE_COLUMNS = ("group", "metric", "value", "ci_low", "ci_high")
IMPROVEMENT_COLUMNS = ("group", "over", "probability", "ci_low", "ci_high")


@dataclass(frozen=True)
class Normalizer:
    """How a task's scores are normalized: ``(score - random) / (reference - random)``."""

    random: float
    reference: float
    #: What the reference is (human, reward_threshold, ...) and the source of both numbers.
    kind: str
    source: str

    def __call__(self, score: float) -> float:
        return (score - self.random) / (self.reference - self.random)


@functools.cache
def published_scores() -> dict[str, dict[str, str]]:
    """reference_scores.csv, by task (env id)."""
    text = resources.files("rlexp.report").joinpath("reference_scores.csv").read_text()
    return {row["task"]: row for row in csv.DictReader(io.StringIO(text))}


def normalizer(task: str) -> Normalizer | None:
    """The task's normalizer, from its published scores; None for a task that has none."""
    row = published_scores().get(task)
    if row is None or not row["reference"]:
        return None
    return Normalizer(float(row["random"]), float(row["reference"]), row["reference_kind"],
                      row["source"])


def task_keys(runs: list[Run]) -> set[str]:
    """The override keys that pick the task: those whose value and the run's env id determine
    each other (``env=``, ``env.game=``, ``env.id=``), with more than one value."""
    values: dict[str, dict[int, str]] = {}
    for run in runs:
        for override in run.overrides:
            if "=" in override:
                key, value = override.split("=", 1)
                values.setdefault(rundir.override_key(key), {})[id(run)] = value
    keys = set()
    for key, by_run in values.items():
        pairs = {(by_run.get(id(r)), r.env_id) for r in runs}
        if len(pairs) > 1 and len({v for v, _ in pairs}) == len(pairs) == len(
                {t for _, t in pairs}) and None not in {v for v, _ in pairs}:
            keys.add(key)
    return keys


@dataclass
class Study:
    """A study's runs grouped across tasks: a group is one configuration on every task."""

    groups: list[Group]
    tasks: list[str]
    normalizers: dict[str, Normalizer]
    #: Tasks left out of the aggregates, and why.
    left_out: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: list[Run]) -> Study | None:
        """The study of ``runs``, or None when they span fewer than two tasks."""
        tasks = sorted({r.env_id for r in runs if r.env_id})
        if len(tasks) < 2:
            return None
        keys = task_keys(runs)
        groups = group_runs(runs, ignore=keys)
        normalizers, left_out = {}, {}
        for task in tasks:
            norm = normalizer(task)
            if norm is None:
                left_out[task] = ("no random and reference scores for it in "
                                  "rlexp/report/reference_scores.csv")
            elif not any(r.env_id == task and r.status == "completed" for r in runs):
                left_out[task] = "no completed run"
            else:
                normalizers[task] = norm
        return cls(groups, tasks, normalizers, left_out)

    @property
    def scored_tasks(self) -> list[str]:
        return [t for t in self.tasks if t in self.normalizers]

    def scores(self, group: Group) -> list[np.ndarray] | None:
        """The group's normalized final returns per scored task, or None when it has no
        completed run on one of them (it then has no aggregate)."""
        out = []
        for task in self.scored_tasks:
            finals = [r.final_return for r in group.completed if r.env_id == task]
            if not finals:
                return None
            out.append(np.array([self.normalizers[task](f) for f in finals]))
        return out

    def score_rows(self) -> list[dict[str, Any]]:
        rows = []
        for g in self.groups:
            for r in sorted(g.completed, key=lambda r: (r.env_id or "", _seed(r) or 0)):
                norm = self.normalizers.get(r.env_id)
                rows.append({"group": g.label, "task": r.env_id, "seed": _seed(r),
                             "final_return": r.final_return,
                             "normalized": None if norm is None else norm(r.final_return)})
        return rows

    @functools.cached_property
    def aggregate_rows(self) -> list[dict[str, Any]]:
        rows = []
        for g in self.groups:
            scores = self.scores(g)
            if scores is None:
                continue
            for metric in METRICS:
                value, low, high = aggregate(metric, scores)
                rows.append({"group": g.label, "metric": metric, "value": value,
                             "ci_low": low, "ci_high": high})
        return rows

    @functools.cached_property
    def improvement_rows(self) -> list[dict[str, Any]]:
        scored = [(g, s) for g in self.groups if (s := self.scores(g)) is not None]
        rows = []
        for g, x in scored:
            for h, y in scored:
                if g is not h:
                    p, low, high = probability_of_improvement(x, y)
                    rows.append({"group": g.label, "over": h.label, "probability": p,
                                 "ci_low": low, "ci_high": high})
        return rows

    def write(self, out_dir: Path, plots: bool = True, references=()) -> list[Path]:
        """The three CSVs and (``plots``) the figures, into ``out_dir``; ``references``:
        published results to draw on their tasks' curves."""
        from rlexp.report.study_figures import write_study_plots

        written = []
        for name, columns, rows in ((SCORES_CSV, SCORE_COLUMNS, self.score_rows()),
                                    (AGGREGATE_CSV, AGGREGATE_COLUMNS, self.aggregate_rows),
                                    (IMPROVEMENT_CSV, IMPROVEMENT_COLUMNS,
                                     self.improvement_rows)):
            written.append(write_csv(out_dir / name, columns, rows))
        return written + (write_study_plots(self, out_dir, references) if plots else [])

    def markdown(self) -> list[str]:
        """summary.md's first section: the aggregate table, the probabilities of improvement
        and how each task was normalized."""
        lines = [f"## Across {len(self.tasks)} tasks", "",
                 f"Tasks: {', '.join(self.tasks)}. Each run's final greedy return is "
                 "normalized per task as (score - random) / (reference - random); the metrics "
                 "are Agarwal et al. 2021's over all tasks and runs (IQM: the mean of the "
                 "middle 50% of runs; median and mean: over tasks, of each task's mean; "
                 "optimality gap: the mean shortfall below 1), each with its 95% stratified "
                 "bootstrap interval (runs resampled within each task).", ""]
        lines.append(_markdown_table(self.aggregate_table()))
        if self.improvement_rows:
            lines += ["", "P(X > Y): the probability that a run of X ends higher than a run of "
                      "Y on the same task, averaged over tasks, with its 95% interval.", ""]
            lines.append(_markdown_table(self.improvement_table()))
        lines += ["", "Normalization:", ""]
        for task in self.tasks:
            if task in self.normalizers:
                n = self.normalizers[task]
                lines.append(f"- {task}: random {n.random:g}, reference {n.reference:g} "
                             f"({n.kind}; {n.source})")
            else:
                lines.append(f"- {task}: left out of the aggregates: {self.left_out[task]}")
        return lines


    def aggregate_table(self) -> list[list[str]]:
        by_group: dict[str, dict[str, dict]] = {}
        for row in self.aggregate_rows:
            by_group.setdefault(row["group"], {})[row["metric"]] = row
        return [["group (normalized score)", *METRICS]] + [
            [label, *(f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
                      for m in (metrics[k] for k in METRICS))]
            for label, metrics in by_group.items()]

    def improvement_table(self) -> list[list[str]]:
        return [["X", "Y", "P(X > Y) [95% CI]"]] + [
            [r["group"], r["over"],
             f"{r['probability']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"]
            for r in self.improvement_rows]

    def text(self) -> str:
        """The aggregates for the terminal."""
        lines = [f"across {len(self.tasks)} tasks ({', '.join(self.tasks)}), normalized final "
                 "return, 95% stratified bootstrap CIs:", _text_table(self.aggregate_table())]
        if self.improvement_rows:
            lines += ["probability of improvement across tasks:",
                      _text_table(self.improvement_table())]
        lines += [f"{task} left out: {why}" for task, why in self.left_out.items()]
        return "\n".join(lines)


def _seed(run: Run) -> int | None:
    seed = run.config.get("seed")
    return None if seed is None else int(seed)

