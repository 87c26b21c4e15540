"""The report of a sweep: built from its directory, written into it, and run at the end of every
multirun by a Hydra callback (:class:`SweepReport`); ``python -m rlexp.report``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rlexp import rundir
from rlexp.hparams import write_sweep_experiment
from rlexp.report import published
from rlexp.report.figures import write_plots
from rlexp.report.runs import EVAL_TAG, Group, Run, group_runs, load_runs
from rlexp.report.study import Study
from rlexp.report.tables import (
    COLUMNS,
    _markdown_table,
    _problems_text,
    _text_table,
    not_completed,
    pairwise_table,
    summary_rows,
    table,
    write_csv,
)
from rlexp.rundir import atomic_write
from rlexp.stop import SweepSignals, clear_sweep_stop, exit_status, sweep_stop_requested


@dataclass
class Report:
    sweep_dir: Path
    runs: list[Run]
    groups: list[Group]
    #: The runs across tasks, when they span several (None: one task).
    study: Study | None = None

    @cached_property
    def references(self) -> list[tuple[published.PublishedResult, list[str]]]:
        """The published results on the runs' tasks, with what the runs do differently."""
        return published.references(self.runs)

    @cached_property
    def pairs(self) -> list[list[str]] | None:
        """The probabilities of improvement between groups; none across tasks, where the
        study's (over the tasks) replace them."""
        return None if self.study is not None else pairwise_table(self.groups)

    @property
    def comparable_references(self) -> list[published.PublishedResult]:
        return [ref for ref, differences in self.references if not differences]

    @property
    def problems(self) -> list[Run]:
        return not_completed(self.runs)

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """The per-group statistics (computed once: the bootstraps are the costly part)."""
        return summary_rows(self.groups)

    def text(self) -> str:
        lines = [f"rlexp sweep report: {self.sweep_dir} ({len(self.runs)} runs, "
                 f"{len(self.groups)} groups)"]
        if self.study is not None:
            lines += [self.study.text(), "per task and configuration:"]
        lines.append(_text_table(table(self.rows)))
        if pairs := self.pairs:
            lines += ["probability of improvement, P(row > column):", _text_table(pairs)]
        if self.problems:
            lines.append(f"{len(self.problems)} runs did not complete:")
            lines += ["  " + p for p in _problems_text(self.runs, self.sweep_dir)]
        return "\n".join(lines)

    def markdown(self, plots: list[Path]) -> str:
        lines = [f"# Sweep report: {self.sweep_dir.name}", ""]
        if self.study is not None:
            lines += [*self.study.markdown(), "", "## Per task and configuration", ""]
        lines += [f"{len(self.runs)} runs in {len(self.groups)} groups (seeds pooled). Final "
                 "return: the final greedy evaluation's mean return of each completed run. "
                 "Steps: env steps to the first evaluation >= target, over the runs that "
                 "reached it. Std is the sample std over seeds; IQM the interquartile mean "
                 "(the mean of the middle 50% of runs), with its 95% percentile-bootstrap CI; "
                 "mean 95% CI: the same for the mean. P(> best): the probability that a run "
                 "of the group ends higher than a run of the group with the best IQM (ties "
                 "count half; Agarwal et al. 2021).", "",
                 _markdown_table(table(self.rows))]
        if pairs := self.pairs:
            lines += ["", "## Probability of improvement", "",
                      "P(row > column): the probability that a run of the row's group ends "
                      "with a higher final return than a run of the column's.", "",
                      _markdown_table(pairs)]
        if self.references:
            lines += ["", *published.markdown(self.references)]
        if self.problems:
            lines += ["", "## Runs that did not complete", ""]
            lines += [f"- {p}" for p in _problems_text(self.runs, self.sweep_dir)]
        if plots:
            lines += ["", "## Figures", ""]
            lines += [f"![{p.stem}]({p.relative_to(self.sweep_dir)})" for p in plots]
        return "\n".join(lines) + "\n"

    def write(self, plots: bool = True, hparams: bool = True) -> list[Path]:
        """summary.csv, summary.md, the PNGs and the HParams experiment, into the sweep dir (and
        across tasks, the study's CSVs and figures)."""
        written_plots = write_plots(self.groups, self.sweep_dir, self.comparable_references) \
            if plots else []
        study_files = [] if self.study is None else self.study.write(
            self.sweep_dir, plots, self.comparable_references)
        written_plots += [p for p in study_files if p.suffix == ".png"]
        if hparams:  # TensorBoard's HParams view of the runs under the sweep dir
            write_sweep_experiment(self.sweep_dir, [(r.overrides, r.config) for r in self.runs
                                                    if r.config],
                                   next((r.scalar_tags for r in self.runs
                                         if EVAL_TAG in r.scalar_tags), []))
        csv_path = write_csv(self.sweep_dir / rundir.SUMMARY_CSV, COLUMNS, self.rows,
                             extrasaction="ignore")
        md_path = self.sweep_dir / rundir.SUMMARY_MD
        markdown = self.markdown(written_plots)
        atomic_write(md_path, lambda tmp: tmp.write_text(markdown))
        return [csv_path, md_path, *(p for p in study_files if p.suffix == ".csv"),
                *written_plots]


def build_report(sweep_dir: Path, target: float | None = None) -> Report:
    runs = load_runs(sweep_dir, target)
    return Report(Path(sweep_dir), runs, group_runs(runs), Study.of(runs))


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/hydra/rlexp.yaml) around every multirun.
    From its start, a stop signal stops the sweep (:class:`SweepSignals`). At its end: write
    and print the report, and exit non-zero when some run did not complete, the report itself
    failed, or the sweep was stopped by a signal (then saying how to resume it)."""

    def __init__(self) -> None:
        self.signals: SweepSignals | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        # Read by each job's directory name (rundir.job_dirname), in this process or a worker.
        rundir.write_swept_keys(sweep_dir, swept_keys(config))
        clear_sweep_stop(sweep_dir)  # left by an earlier, interrupted launch of this sweep
        # submitit's local executor runs each job under a controller process of its own.
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_"))
        local_submitit = "submitit" in launcher and launcher.endswith("LocalLauncher")
        self.signals = SweepSignals(sweep_dir, jobs_are_grandchildren=local_submitit)
        self.signals.__enter__()
        if (mlflow := OmegaConf.select(config, "logger.mlflow")) is not None:
            from rlexp.trackers.mlflow import start_sweep

            start_sweep(mlflow, sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            self._end(sweep_dir, OmegaConf.select(config, "logger.mlflow"))
        finally:
            if self.signals is not None:
                self.signals.__exit__(None, None, None)

    def _end(self, sweep_dir: Path, mlflow: Any = None) -> None:
        signum = sweep_stop_requested(sweep_dir)
        clear_sweep_stop(sweep_dir)
        written: list[Path] = []
        try:
            report = build_report(sweep_dir)
            if report.runs:
                written = report.write()
                print(report.text(), flush=True)
                print(f"report: {sweep_dir / rundir.SUMMARY_MD}\n"
                      f"curves and hparams: tensorboard --logdir {shlex.quote(str(sweep_dir))}",
                      flush=True)
        except Exception as e:  # noqa: BLE001 - one line, and the sweep still says it failed
            print(f"rlexp: error: the sweep report failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            sys.exit(1)
        finally:
            if mlflow is not None:  # the report's files on the sweep's parent run
                from rlexp.trackers.mlflow import end_sweep

                end_sweep(mlflow, sweep_dir, [p for p in written if p.suffix in (".png", ".md")],
                          "interrupted" if signum is not None else "completed")
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
