"""The report's figures: eval-return curves per group with bootstrap bands, and the aggregate
(the IQM of the final return with its interval, and a performance profile).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from rlexp import rundir
from rlexp.report.published import PublishedResult
from rlexp.report.runs import Group
from rlexp.report.statistics import bootstrap_ci
from rlexp.rundir import atomic_write


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


def draw_references(ax, references: list[PublishedResult], task: str | None) -> None:
    """The published results on ``task`` (of the same protocol) as dotted lines."""
    for ref in references:
        if ref.task == task:
            ax.axhline(ref.mean, linestyle=":", linewidth=1.2, color="0.1",
                       label=f"{ref.label}, published")


def figures(groups: list[Group], sweep_dir: Path,
            references: list[PublishedResult] = ()) -> dict[Path, Any]:
    """The report's matplotlib figures, by the path each is saved to: ``curves.png`` (every
    configuration's learning curve, with the published ``references`` of its task), one
    ``curves/<group>.png`` per group, and
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
        tasks = {r.env_id for g, _ in drawn for r in g.runs}
        draw_references(ax, references, tasks.pop() if len(tasks) == 1 else None)
        seeds = _seeds_phrase([len(g.completed) for g, _ in drawn])
        ax.set_title(textwrap.fill(title, 90) + "\ngreedy evaluation return: mean and 95% "
                     f"bootstrap CI over {seeds}", fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("greedy evaluation return")
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center" if below else "outside right upper", fontsize=7)
        return fig

    if bands:
        out[sweep_dir / rundir.CURVES_PNG] = curves(bands, _headline(groups))
        for group, band in bands:
            path = sweep_dir / rundir.CURVES_DIR / f"{rundir.safe_dirname(group.label)}.png"
            out[path] = curves([(group, band)], f"{_headline([group])}: {labels[id(group)]}")
    scored = [g for g in groups if g.final_returns]
    if scored:
        out[sweep_dir / rundir.AGGREGATE_PNG] = _aggregate(plt, scored, labels, colors, target)
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


def write_plots(groups: list[Group], sweep_dir: Path,
                references: list[PublishedResult] = ()) -> list[Path]:
    return save_figures(figures(groups, sweep_dir, references))


def save_figures(figs: dict[Path, Any]) -> list[Path]:
    """Each figure as a PNG at its path, written atomically, then closed."""
    import matplotlib.pyplot as plt

    written = []
    for path, fig in figs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        data = buffer.getvalue()
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        written.append(path)
    return written
