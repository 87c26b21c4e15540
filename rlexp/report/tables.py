"""The report's tables: one row per group (summary.md, summary.csv, the console) and the
pairwise probabilities of improvement.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlexp.report.figures import short_labels
from rlexp.report.runs import Group, Run
from rlexp.report.statistics import probability_of_improvement
from rlexp.rundir import atomic_write


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


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]],
              extrasaction: str = "raise") -> Path:
    """``rows`` as a CSV of ``columns``, written atomically (``extrasaction="ignore"``: keys
    beyond the columns are left out)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n",
                            extrasaction=extrasaction)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(out.getvalue()))
    return path


def _markdown_table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def not_completed(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status != "completed"]


def _problems_text(runs: list[Run], sweep_dir: Path) -> list[str]:
    """Each run that did not complete, with its path under ``sweep_dir`` (or its whole path:
    a comparison's runs live in other sweeps)."""
    return [f"{r.dir.relative_to(sweep_dir) if r.dir.is_relative_to(sweep_dir) else r.dir}: "
            f"{r.status}" + (f": {r.error}" if r.error else "") for r in not_completed(runs)]
