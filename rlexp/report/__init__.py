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

from rlexp.report.figures import LEGEND_BESIDE_MAX_CHARS, figures, short_labels, write_plots
from rlexp.report.runs import EVAL_TAG, Group, Run, group_runs, load_runs
from rlexp.report.statistics import (
    BOOTSTRAP_SAMPLES,
    Stats,
    bootstrap_ci,
    iqm,
    probability_of_improvement,
)
from rlexp.report.sweep import Report, SweepReport, build_report, main, resume_command, swept_keys
from rlexp.report.tables import (
    COLUMNS,
    HOLD_LAST,
    PAIRWISE_MAX_GROUPS,
    best_group,
    not_completed,
    pairwise_table,
    summary_rows,
    table,
)

__all__ = [
    "BOOTSTRAP_SAMPLES", "COLUMNS", "EVAL_TAG", "Group", "HOLD_LAST",
    "LEGEND_BESIDE_MAX_CHARS", "PAIRWISE_MAX_GROUPS", "Report", "Run", "Stats", "SweepReport",
    "best_group", "bootstrap_ci", "build_report", "figures", "group_runs", "iqm", "load_runs",
    "main", "not_completed", "pairwise_table", "probability_of_improvement", "resume_command",
    "short_labels", "summary_rows", "swept_keys", "table", "write_plots",
]
