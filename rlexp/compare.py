"""``python -m rlexp.compare DIR [DIR ...] --out OUT``: one report over several sweeps, e.g. a new
agent's sweep today against a baseline sweep from last month.

The runs of every DIR are pooled and grouped by their overrides (with the sweep each came
from, when there are several), tasks are matched by env id, and the report (the cross-task
one when the runs span several tasks: scores.csv, aggregate.csv, improvement.csv and the
figures; rlexp.report.study) is written into OUT. Runs of different suites, or of one task
trained for different budgets, are refused in one line: their scores do not compare.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from rlexp.report.runs import Run, group_runs, load_runs
from rlexp.report.study import Study
from rlexp.report.sweep import Report


class Mismatch(ValueError):
    """Runs whose scores do not compare."""


def check_comparable(runs: list[Run]) -> None:
    suites = {s for r in runs if (s := r.config.get("suite.name")) not in (None, "None")}
    if len(suites) > 1:
        raise Mismatch(f"the runs are of different suites ({', '.join(sorted(suites))}): "
                       "compare runs of one suite")
    budgets: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        budgets[r.env_id or "?"][str(r.config.get("total_steps"))].append(r.dir)
    for task, by_budget in sorted(budgets.items()):
        if len(by_budget) > 1:
            seen = "; ".join(f"{steps} steps in {dirs[0]}" for steps, dirs in by_budget.items())
            raise Mismatch(f"{task} was trained for different budgets ({seen}): a comparison "
                           "needs the same total_steps per task")


def _labelled(dirs: list[Path]) -> dict[Path, str]:
    """A label per sweep: its directory's name, or its path where two names are alike."""
    names = [d.name for d in dirs]
    return {d: d.name if names.count(d.name) == 1 else str(d) for d in dirs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlexp.compare", description=__doc__.split(
        "\n\n")[0].split(": ", 1)[1])
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                        help="sweep (or run) directories, e.g. outputs/multirun/DATE/TIME")
    parser.add_argument("--out", type=Path, required=True, help="directory for the report")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    labels = _labelled(args.dirs)
    for d in args.dirs:
        if not d.is_dir():
            parser.exit(2, f"rlexp: error: {d} is not a directory\n")
        found = load_runs(d)
        if not found:
            parser.exit(2, f"rlexp: error: no runs under {d} (no .hydra/ folders)\n")
        for r in found:
            if len(args.dirs) > 1:  # the sweep is part of the configuration
                r.overrides.append(f"sweep={labels[d]}")
        runs += found
    try:
        check_comparable(runs)
    except Mismatch as e:
        parser.exit(2, f"rlexp: error: {e}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out, runs, group_runs(runs), Study.of(runs))
    written = report.write(plots=not args.no_plots, hparams=False)
    print(report.text())
    print(f"wrote {len(written)} files into {args.out}: " + ", ".join(
        str(p.relative_to(args.out)) for p in written[:4]) + (", ..." if len(written) > 4 else ""))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
