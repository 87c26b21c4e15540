"""Sweep reports: which configuration is better, and by how much, with error bars.

    python -m rlexp.report SWEEP_DIR [--target RETURN] [--no-plots]

also runs by itself at the end of every multirun (:class:`SweepReport`, a Hydra callback). The
runs of the sweep (every directory under SWEEP_DIR with a ``.hydra/`` folder, or its ``seed<N>/``
directories for a job that trained ``seeds=N`` runs) are grouped by their command-line overrides
with ``seed=`` and ``seeds=`` left out, so seeds are pooled. Per group, over the
completed runs: the number of seeds, the mean, sample std, interquartile mean (IQM: the mean of
the middle 50%) with 95% percentile-bootstrap confidence intervals of the IQM and the mean, for
the final greedy eval return (``metrics.json``) and for the env steps to reach the target
return (the first ``eval/return_mean`` point >= target in the TensorBoard events; over the
runs that reached it); and the probability of improvement between groups (Agarwal et al.
2021). The target is ``--target`` or the env's ``solved_return``. Everything is read back from
the files, so it works for any past sweep.

Written into SWEEP_DIR: ``summary.md``, ``summary.csv``, ``curves.png`` plus one
``curves/<group>.png`` per group (eval return against env steps: the mean over seeds with a 95%
bootstrap band; a run that stopped early counts with its last evaluation afterwards), and
``aggregate.png`` (the IQM of the final return with its CI, and a performance profile).
Runs that did not complete (failed, diverged, interrupted, or killed before writing
``metrics.json``) are listed with their error.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import shlex
import signal
import sys
import textwrap
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rlexp import rundir
from rlexp.hparams import write_sweep_experiment
from rlexp.metrics import read_metrics
from rlexp.rundir import atomic_write
from rlexp.runtime import skip_exit_collection
from rlexp.stop import SweepSignals, clear_sweep_stop, exit_status, sweep_stop_requested

BOOTSTRAP_SAMPLES = 10_000
EVAL_TAG = "eval/return_mean"
SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"
CURVES_PNG, CURVES_DIR, AGGREGATE_PNG = "curves.png", "curves", "aggregate.png"


# ---------------------------------------------------------------------------------- statistics
# SciPy's: trim_mean for the IQM, bootstrap (percentile intervals, a fixed seed) for the
# confidence intervals, and the Mann-Whitney U statistic for the probability of improvement,
# the estimators rliable (Agarwal et al. 2021) uses for a single task.


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


# --------------------------------------------------------------------------------------- runs


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


# ------------------------------------------------------------------------------------- groups


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


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by their overrides minus ``seed=``; overrides shared by every run of the
    sweep are left out of the labels."""
    keys = {id(r): tuple(sorted(o for o in r.overrides if not _is_seed(o))) for r in runs}
    shared = set.intersection(*(set(k) for k in keys.values())) if runs else set()
    groups: dict[str, Group] = {}
    for run in runs:
        own = tuple(o for o in keys[id(run)] if o not in shared)
        label = ",".join(own) or "all runs"
        groups.setdefault(label, Group(label, overrides=own)).runs.append(run)
    return list(groups.values())


# ------------------------------------------------------------------------------------ outputs


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


#: Evaluations averaged for "holds": the final one, and the last HOLD_LAST.
HOLD_LAST = 5
#: Up to this many groups, the report has the table of P(row > column) for every pair.
PAIRWISE_MAX_GROUPS = 8
COLUMNS = ["group", "runs", "completed", "return_mean", "return_std", "return_iqm",
           "return_iqm_ci_low", "return_iqm_ci_high", "return_ci_low", "return_ci_high",
           "p_improvement_vs_best", "target", "reached", "final_holds", "last5_holds",
           "steps_mean", "steps_std", "steps_iqm", "steps_ci_low", "steps_ci_high"]


def best_group(groups: list[Group]) -> Group | None:
    """The group with the highest IQM of the final return (the reference for P(> best)); on a
    tie, the higher mean, then the first."""
    scored = [(g.returns().iqm, g.returns().mean, -i)
              for i, g in enumerate(groups) if g.final_returns]
    return groups[-max(scored)[2]] if scored else None


def summary_rows(groups: list[Group]) -> list[dict[str, Any]]:
    rows = []
    best = best_group(groups)
    shown = short_labels(groups, short_keys=False, digits=6)
    for g, label in zip(groups, shown, strict=True):
        ret, steps = g.returns(), g.steps()
        rows.append({
            "group": g.label, "runs": len(g.runs), "completed": len(g.completed),
            "return_mean": ret.mean, "return_std": ret.std, "return_iqm": ret.iqm,
            "return_iqm_ci_low": ret.iqm_ci_low, "return_iqm_ci_high": ret.iqm_ci_high,
            "return_ci_low": ret.ci_low, "return_ci_high": ret.ci_high,
            "p_improvement_vs_best": math.nan if best is None else
            probability_of_improvement(g.final_returns, best.final_returns),
            "target": g.target,
            "reached": steps.n, "final_holds": g.holding(1), "last5_holds": g.holding(HOLD_LAST),
            "steps_mean": steps.mean, "steps_std": steps.std,
            "steps_iqm": steps.iqm, "steps_ci_low": steps.ci_low, "steps_ci_high": steps.ci_high,
            "best": g is best, "label": label,
        })
    return rows


def table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Header and rows for the printed and markdown tables."""
    header = ["group", "seeds", "final return mean ± std", "IQM [95% CI]", "mean 95% CI",
              "P(> best)", "target", "reached", "final >= target", f"last {HOLD_LAST} >= target",
              "steps mean ± std", "steps IQM", "steps 95% CI"]
    body = [[
        r["label"], f"{r['completed']}/{r['runs']}",
        f"{_fmt(r['return_mean'])} ± {_fmt(r['return_std'])}",
        f"{_fmt(r['return_iqm'])} [{_fmt(r['return_iqm_ci_low'])}, "
        f"{_fmt(r['return_iqm_ci_high'])}]",
        f"[{_fmt(r['return_ci_low'])}, {_fmt(r['return_ci_high'])}]",
        "best" if r["best"] else _fmt(r["p_improvement_vs_best"], 2), _fmt(r["target"], 0),
        *("n/a" if r["target"] is None else f"{r[k]}/{r['completed']}"
          for k in ("reached", "final_holds", "last5_holds")),
        f"{_fmt(r['steps_mean'], 0)} ± {_fmt(r['steps_std'], 0)}", _fmt(r["steps_iqm"], 0),
        f"[{_fmt(r['steps_ci_low'], 0)}, {_fmt(r['steps_ci_high'], 0)}]",
    ] for r in rows]
    return [header, *body]


def pairwise_table(groups: list[Group]) -> list[list[str]] | None:
    """P(row > column) for every pair of groups with completed runs (None for fewer than two
    or more than PAIRWISE_MAX_GROUPS)."""
    scored = [g for g in groups if g.final_returns]
    if not 2 <= len(scored) <= PAIRWISE_MAX_GROUPS:
        return None
    names = [f"({i + 1})" for i in range(len(scored))]
    labels = short_labels(scored, short_keys=False, digits=6)
    cells = [["P(row > column)", *names]]
    for name, label, g in zip(names, labels, scored, strict=True):
        cells.append([f"{name} {label}", *(
            "" if h is g else _fmt(probability_of_improvement(g.final_returns, h.final_returns), 2)
            for h in scored)])
    return cells


def _text_table(cells: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def not_completed(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status != "completed"]


def _problems_text(runs: list[Run], sweep_dir: Path) -> list[str]:
    return [f"{r.dir.relative_to(sweep_dir)}: {r.status}" + (f": {r.error}" if r.error else "")
            for r in not_completed(runs)]


def _curve_band(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Grid of env steps, and the mean and 95% bootstrap band of the eval return over seeds."""
    curves = [r.eval_curve for r in group.completed if r.eval_curve]
    if not curves:
        return None
    grid = np.unique(np.concatenate([[s for s, _ in c] for c in curves]))
    values = np.full((len(curves), len(grid)), np.nan)
    for i, curve in enumerate(curves):
        steps, vals = np.array([s for s, _ in curve]), np.array([v for _, v in curve])
        idx = np.searchsorted(steps, grid, side="right") - 1  # the last eval at or before
        values[i] = np.where(idx >= 0, vals[np.maximum(idx, 0)], np.nan)
    mean = np.nanmean(values, axis=0)
    band = np.array([bootstrap_ci(col[~np.isnan(col)], samples=2_000) for col in values.T])
    return grid, mean, band[:, 0], band[:, 1]


def _short_value(value: str, digits: int) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("+-").isdigit() else f"{number:.{digits}g}"


def short_labels(groups: list[Group], short_keys: bool = True, digits: int = 4) -> list[str]:
    """The groups' labels for figures (and, with ``short_keys=False``, tables): each override's
    key cut to its last dotted part (or as many as tell it from the sweep's other keys), numbers
    to ``digits`` significant digits (``optimizer.lr=0.0023456`` -> ``lr=0.002346``); the full
    labels if two would read alike."""
    keys = {rundir.override_key(o) for g in groups for o in g.overrides}

    def short_key(key: str) -> str:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(k == suffix or k.endswith("." + suffix) for k in keys) == 1:
                return suffix
        return key

    labels = []
    for g in groups:
        items = []
        for override in g.overrides:
            key = rundir.override_key(override)
            shown = short_key(key) if short_keys else key
            items.append(f"{shown}={_short_value(override.split('=', 1)[1], digits)}"
                         if "=" in override else override)
        labels.append(",".join(items) or g.label)
    return labels if len(set(labels)) == len(labels) else [g.label for g in groups]


def _headline(groups: list[Group]) -> str:
    """What was trained on what: the env ids and agents of the runs."""
    envs = sorted({r.env_id for g in groups for r in g.runs if r.env_id})
    agents = sorted({r.agent for g in groups for r in g.runs if r.agent})
    return f"{', '.join(envs) or 'env n/a'}, agent {', '.join(agents) or 'n/a'}"


def _seeds_phrase(counts: list[int]) -> str:
    if len(set(counts)) == 1:
        return f"{counts[0]} seed" + ("s" if counts[0] != 1 else "")
    return "seeds (n per configuration in the legend)"


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def figures(groups: list[Group], sweep_dir: Path) -> dict[Path, Any]:
    """The report's matplotlib figures, by the path each is saved to: ``curves.png`` (every
    configuration's learning curve), one ``curves/<group>.png`` per group, and
    ``aggregate.png`` (IQM of the final return with its 95% bootstrap CI, and a performance
    profile: the fraction of runs whose final return is above each value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(zip((id(g) for g in groups), short_labels(groups), strict=True))
    colors = dict(zip((id(g) for g in groups), _colors(len(groups)), strict=True))
    bands = [(g, b) for g in groups if (b := _curve_band(g)) is not None]
    target = next((g.target for g in groups if g.target is not None), None)
    out: dict[Path, Any] = {}

    def curves(drawn: list[tuple[Group, tuple]], title: str) -> Any:
        below = _legend_below([labels[id(g)] for g, _ in drawn])
        fig, ax = plt.subplots(figsize=(9, 5 + (0.16 * (len(drawn) + 1) if below else 0)),
                               layout="constrained")
        for group, (grid, mean, low, high) in drawn:
            color = colors[id(group)]
            ax.plot(grid, mean, marker="o", markersize=3, color=color,
                    label=f"{labels[id(group)]} (n={len(group.completed)})")
            ax.fill_between(grid, low, high, alpha=0.2, color=color, linewidth=0)
        if target is not None:
            ax.axhline(target, linestyle="--", linewidth=1, color="0.35",
                       label=f"target {target:g}")
        seeds = _seeds_phrase([len(g.completed) for g, _ in drawn])
        ax.set_title(textwrap.fill(title, 90) + "\ngreedy evaluation return: mean and 95% "
                     f"bootstrap CI over {seeds}", fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("greedy evaluation return")
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center" if below else "outside right upper", fontsize=7)
        return fig

    if bands:
        out[sweep_dir / CURVES_PNG] = curves(bands, _headline(groups))
        for group, band in bands:
            path = sweep_dir / CURVES_DIR / f"{rundir.safe_dirname(group.label)}.png"
            out[path] = curves([(group, band)], f"{_headline([group])}: {labels[id(group)]}")
    scored = [g for g in groups if g.final_returns]
    if scored:
        out[sweep_dir / AGGREGATE_PNG] = _aggregate(plt, scored, labels, colors, target)
    return out


def _aggregate(plt, groups: list[Group], labels: dict, colors: dict, target: float | None):
    below = _legend_below([labels[id(g)] for g in groups])
    # Long labels go in the legend, below, numbered; the IQM panel's rows carry the numbers.
    names = {id(g): f"({i + 1})" if below else labels[id(g)] for i, g in enumerate(groups)}
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 2.5 + 0.35 * len(groups) + (0.16 * (len(groups) + 1) if below else 0)),
        layout="constrained")
    for y, g in enumerate(groups):
        stats = g.returns()
        # (a percentile interval need not hold the estimate itself: few or tied runs)
        left.errorbar([stats.iqm], [y], xerr=[[max(stats.iqm - stats.iqm_ci_low, 0)],
                                              [max(stats.iqm_ci_high - stats.iqm, 0)]],
                      fmt="o", capsize=4, color=colors[id(g)])
    left.set_yticks(range(len(groups)), [names[id(g)] for g in groups], fontsize=7)
    left.invert_yaxis()
    left.set_ylabel("configuration")
    left.set_xlabel("interquartile mean (IQM) of the final return, 95% bootstrap CI")
    left.set_title("IQM of the final return", fontsize=9)
    finals = np.concatenate([g.final_returns for g in groups])
    low, high = float(finals.min()), float(finals.max())
    if high == low:
        low, high = low - 1, high + 1
    taus = np.linspace(low, high, 200)
    for g in groups:
        x = np.asarray(g.final_returns)[:, None]
        right.step(taus, (x > taus).mean(axis=0), where="post", color=colors[id(g)],
                   label=(f"{names[id(g)]} " if below else "")
                   + f"{labels[id(g)]} (n={len(g.final_returns)})")
    if target is not None:
        for ax in (left, right):
            ax.axvline(target, linestyle="--", linewidth=1, color="0.35",
                       label=f"target {target:g}" if ax is right else None)
    right.set_xlabel("final return τ")
    right.set_ylabel("fraction of runs with final return > τ")
    right.set_ylim(-0.02, 1.02)
    right.set_title("performance profile", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_headline(groups)}: final greedy evaluation return over "
                 f"{_seeds_phrase([len(g.final_returns) for g in groups])}", fontsize=10)
    fig.legend(loc="outside lower center" if below else "outside right upper", fontsize=7)
    return fig


#: Labels longer than this put a figure's legend below the plot, not beside it.
LEGEND_BESIDE_MAX_CHARS = 40


def _legend_below(labels: list[str]) -> bool:
    return max(map(len, labels), default=0) > LEGEND_BESIDE_MAX_CHARS


def write_plots(groups: list[Group], sweep_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    written = []
    for path, fig in figures(groups, sweep_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        data = buffer.getvalue()
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        written.append(path)
    return written


@dataclass
class Report:
    sweep_dir: Path
    runs: list[Run]
    groups: list[Group]

    @property
    def problems(self) -> list[Run]:
        return not_completed(self.runs)

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """The per-group statistics (computed once: the bootstraps are the costly part)."""
        return summary_rows(self.groups)

    def text(self) -> str:
        lines = [f"rlexp sweep report: {self.sweep_dir} ({len(self.runs)} runs, "
                 f"{len(self.groups)} groups)", _text_table(table(self.rows))]
        if pairs := pairwise_table(self.groups):
            lines += ["probability of improvement, P(row > column):", _text_table(pairs)]
        if self.problems:
            lines.append(f"{len(self.problems)} runs did not complete:")
            lines += ["  " + p for p in _problems_text(self.runs, self.sweep_dir)]
        return "\n".join(lines)

    def markdown(self, plots: list[Path]) -> str:
        lines = [f"# Sweep report: {self.sweep_dir.name}", "",
                 f"{len(self.runs)} runs in {len(self.groups)} groups (seeds pooled). Final "
                 "return: the final greedy evaluation's mean return of each completed run. "
                 "Steps: env steps to the first evaluation >= target, over the runs that "
                 "reached it. Std is the sample std over seeds; IQM the interquartile mean "
                 "(the mean of the middle 50% of runs), with its 95% percentile-bootstrap CI; "
                 "mean 95% CI: the same for the mean. P(> best): the probability that a run "
                 "of the group ends higher than a run of the group with the best IQM (ties "
                 "count half; Agarwal et al. 2021).", "",
                 _markdown_table(table(self.rows))]
        if pairs := pairwise_table(self.groups):
            lines += ["", "## Probability of improvement", "",
                      "P(row > column): the probability that a run of the row's group ends "
                      "with a higher final return than a run of the column's.", "",
                      _markdown_table(pairs)]
        if self.problems:
            lines += ["", "## Runs that did not complete", ""]
            lines += [f"- {p}" for p in _problems_text(self.runs, self.sweep_dir)]
        if plots:
            lines += ["", "## Figures", ""]
            lines += [f"![{p.stem}]({p.relative_to(self.sweep_dir)})" for p in plots]
        return "\n".join(lines) + "\n"

    def write(self, plots: bool = True) -> list[Path]:
        """summary.csv, summary.md, the PNGs and the HParams experiment, into the sweep dir."""
        written_plots = write_plots(self.groups, self.sweep_dir) if plots else []
        write_sweep_experiment(self.sweep_dir, [(r.overrides, r.config) for r in self.runs
                                                if r.config],
                               next((r.scalar_tags for r in self.runs
                                     if EVAL_TAG in r.scalar_tags), []))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        csv_path, md_path = self.sweep_dir / SUMMARY_CSV, self.sweep_dir / SUMMARY_MD
        atomic_write(csv_path, lambda tmp: tmp.write_text(out.getvalue()))
        markdown = self.markdown(written_plots)
        atomic_write(md_path, lambda tmp: tmp.write_text(markdown))
        return [csv_path, md_path, *written_plots]


def build_report(sweep_dir: Path, target: float | None = None) -> Report:
    runs = load_runs(sweep_dir, target)
    return Report(Path(sweep_dir), runs, group_runs(runs))


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/hydra/rlexp.yaml): at the end of a multirun,
    write and print the report, and exit non-zero when some run did not complete, the report
    itself failed, or the sweep was stopped by a signal (then saying how to resume it)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Read by each job's directory name (rundir.job_dirname), in this process or a worker.
        os.environ[rundir.SWEPT_KEYS_ENV] = ",".join(swept_keys(config))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        clear_sweep_stop(sweep_dir)  # left by an earlier, interrupted launch of this sweep
        SweepSignals.sweep_dir = sweep_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        signum = sweep_stop_requested(sweep_dir)
        clear_sweep_stop(sweep_dir)
        try:
            report = build_report(sweep_dir)
            if report.runs:
                report.write()
                print(report.text(), flush=True)
                print(f"report: {sweep_dir / SUMMARY_MD}\n"
                      f"curves and hparams: tensorboard --logdir {shlex.quote(str(sweep_dir))}",
                      flush=True)
        except Exception as e:  # noqa: BLE001 - one line, and the sweep still says it failed
            print(f"rlexp: error: the sweep report failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            sys.exit(1)
        if signum is not None:
            print(f"the sweep was stopped by {signal.Signals(signum).name}; continue it with:\n"
                  f"  {resume_command(sweep_dir)}", flush=True)
            sys.exit(exit_status(signum))
        if report.problems:
            sys.exit(1)


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: its sweep overrides (``seed=0,1``, ``range()``, ...) and the
    search space of a sweeper that has one (Optuna's params)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return keys + [str(k) for k in params if str(k) not in keys]


def resume_command(sweep_dir: Path, argv: list[str] | None = None) -> str:
    """The command that continues the sweep in ``sweep_dir``: this process's command line with
    its sweep directory and ``resume=true``."""
    args = [a for a in (sys.argv[1:] if argv is None else argv)
            if a not in ("-m", "--multirun")
            and rundir.override_key(a) not in (*rundir.LAUNCH_KEYS, "hydra.sweep.dir")]
    return " ".join(["python -m rlexp.train -m", *map(shlex.quote, args),
                     f"hydra.sweep.dir={shlex.quote(str(sweep_dir))}", "resume=true"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlexp.report", description=(
        "Summarise a sweep: per configuration, seeds pooled, the final eval return and the "
        "steps to a target return, with IQM and bootstrap CIs; writes summary.md, summary.csv "
        "and learning-curve PNGs into the sweep dir."))
    parser.add_argument("sweep_dir", type=Path,
                        help="a multirun dir, e.g. outputs/multirun/DATE/TIME")
    parser.add_argument("--target", type=float, default=None,
                        help="return to reach (default: each run's env.solved_return)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.exit(2, f"rlexp: error: {args.sweep_dir} is not a directory\n")
    report = build_report(args.sweep_dir, args.target)
    if not report.runs:
        parser.exit(2, f"rlexp: error: no runs under {args.sweep_dir} (no .hydra/ folders)\n")
    written = report.write(plots=not args.no_plots)
    print(report.text())
    print("wrote " + ", ".join(str(p.relative_to(args.sweep_dir)) for p in written[:3]) +
          (f" and {len(written) - 3} more" if len(written) > 3 else ""))
    return 1 if report.problems else 0


if __name__ == "__main__":
    skip_exit_collection()
    sys.exit(main())
