"""The cross-task report's figures (rlexp.report.study): the aggregate metrics with their
intervals, performance profiles with bands, sample-efficiency curves and a grid of per-task
learning curves.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlexp.report.aggregate import METRICS, aggregate, performance_profile
from rlexp.report.figures import _colors, _curve_band, draw_references, save_figures, short_labels
from rlexp.report.runs import Group

if TYPE_CHECKING:
    from rlexp.report.study import Study

AGGREGATE_PNG = "tasks_aggregate.png"
PROFILE_PNG = "tasks_profile.png"
SAMPLE_EFFICIENCY_PNG = "tasks_sample_efficiency.png"
CURVES_PNG = "tasks_curves.png"
#: Points of the sample-efficiency curves, and their bootstraps (cheaper than the tables').
CURVE_POINTS, CURVE_RESAMPLES = 21, 2_000
METRIC_TITLES = {"iqm": "IQM", "median": "median", "mean": "mean",
                 "optimality_gap": "optimality gap"}


def write_study_plots(study: Study, out_dir: Path, references=()) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [g for g in study.groups if study.scores(g) is not None]
    labels = dict(zip((id(g) for g in study.groups), short_labels(study.groups), strict=True))
    colors = dict(zip((id(g) for g in study.groups), _colors(len(study.groups)), strict=True))
    figs: dict[Path, Any] = {out_dir / CURVES_PNG: _task_curves(plt, study, labels, colors,
                                                                references)}
    if scored:
        figs[out_dir / AGGREGATE_PNG] = _aggregates(plt, study, scored, labels, colors)
        figs[out_dir / PROFILE_PNG] = _profiles(plt, study, scored, labels, colors)
        figs[out_dir / SAMPLE_EFFICIENCY_PNG] = _sample_efficiency(plt, study, scored, labels,
                                                                   colors)
    return save_figures(figs)


def _title(study: Study, what: str) -> str:
    tasks = study.scored_tasks
    return textwrap.fill(f"{what} over {len(tasks)} tasks ({', '.join(tasks)}); 95% stratified "
                         "bootstrap intervals", 110)


def _aggregates(plt, study: Study, groups: list[Group], labels: dict, colors: dict):
    rows = {(r["group"], r["metric"]): r for r in study.aggregate_rows}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS),
                                                       1.6 + 0.4 * len(groups)),
                             layout="constrained", sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        for y, g in enumerate(groups):
            r = rows[(g.label, metric)]
            ax.errorbar([r["value"]], [y], xerr=[[max(r["value"] - r["ci_low"], 0)],
                                                 [max(r["ci_high"] - r["value"], 0)]],
                        fmt="o", capsize=4, color=colors[id(g)])
        ax.set_title(METRIC_TITLES[metric], fontsize=9)
        ax.set_xlabel("normalized score")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(groups)), [labels[id(g)] for g in groups], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(_title(study, "Aggregate normalized final return"), fontsize=9)
    return fig


def _profiles(plt, study: Study, groups: list[Group], labels: dict, colors: dict):
    scores = {id(g): study.scores(g) for g in groups}
    high = max(1.0, max(float(np.concatenate(s).max()) for s in scores.values()))
    low = min(0.0, min(float(np.concatenate(s).min()) for s in scores.values()))
    taus = np.linspace(low, high, 101)
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for g in groups:
        profile, lo, hi = performance_profile(scores[id(g)], taus, resamples=CURVE_RESAMPLES)
        ax.plot(taus, profile, color=colors[id(g)], label=labels[id(g)])
        ax.fill_between(taus, lo, hi, color=colors[id(g)], alpha=0.2, linewidth=0)
    ax.set_xlabel("normalized score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_title(study, "Performance profile of the normalized final return"),
                 fontsize=9)
    return fig


def _normalized_at(study: Study, group: Group, fraction: float) -> list[np.ndarray]:
    """Each scored task's runs' normalized eval return at ``fraction`` of the task's budget
    (the last evaluation at or before it)."""
    out = []
    for task in study.scored_tasks:
        values = []
        for r in group.completed:
            if r.env_id != task or not r.eval_curve:
                continue
            budget = float(r.config.get("total_steps") or r.eval_curve[-1][0])
            before = [v for s, v in r.eval_curve if s <= fraction * budget + 1e-9]
            values.append(study.normalizers[task](before[-1] if before else r.eval_curve[0][1]))
        out.append(np.array(values))
    return out


def _sample_efficiency(plt, study: Study, groups: list[Group], labels: dict, colors: dict):
    fractions = np.linspace(0.0, 1.0, CURVE_POINTS)
    budgets = {r.config.get("total_steps") for g in groups for r in g.completed}
    same = len(budgets) == 1 and None not in budgets
    x = fractions * float(budgets.pop()) if same else fractions
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for g in groups:
        points = []
        for f in fractions:
            tasks = _normalized_at(study, g, f)
            points.append(aggregate("iqm", tasks, resamples=CURVE_RESAMPLES)
                          if all(len(t) for t in tasks) else (math.nan,) * 3)
        value, lo, hi = np.array(points).T
        ax.plot(x, value, marker="o", markersize=3, color=colors[id(g)], label=labels[id(g)])
        ax.fill_between(x, lo, hi, color=colors[id(g)], alpha=0.2, linewidth=0)
    ax.set_xlabel("env steps" if same else "fraction of each task's budget of env steps")
    ax.set_ylabel("IQM of the normalized evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_title(study, "Sample efficiency: IQM of the normalized greedy return"),
                 fontsize=9)
    return fig


def _task_curves(plt, study: Study, labels: dict, colors: dict, references):
    cols = min(3, len(study.tasks))
    rows = -(-len(study.tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows + 0.6),
                             layout="constrained", squeeze=False)
    for ax, task in zip(axes.flat, study.tasks, strict=False):
        for g in study.groups:
            part = Group(g.label, [r for r in g.runs if r.env_id == task])
            band = _curve_band(part)
            if band is None:
                continue
            grid, mean, low, high = band
            ax.plot(grid, mean, color=colors[id(g)], label=labels[id(g)])
            ax.fill_between(grid, low, high, color=colors[id(g)], alpha=0.2, linewidth=0)
        draw_references(ax, references, task)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.set_ylabel("greedy evaluation return", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(study.tasks):]:
        ax.set_visible(False)
    legend = {}  # every panel's lines, each name once (a reference is on its task's alone)
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    handles, names = list(legend.values()), list(legend)
    fig.legend(handles, names, loc="outside lower center", fontsize=7,
               ncols=min(4, max(1, len(names))))
    fig.suptitle("Greedy evaluation return of each task: mean over seeds and 95% bootstrap CI",
                 fontsize=9)
    return fig
