"""``metrics.json``: the machine-readable outcome of a run, written at its end.

The schema is the :class:`RunMetrics` dataclass; ``schema_version`` changes whenever a field is
renamed or removed (adding a field does not change it). Tools that compare runs (reports, sweeps)
read this file and the TensorBoard events, never the process that wrote them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from rlexp.rundir import METRICS as FILENAME
from rlexp.rundir import atomic_write

SCHEMA_VERSION = 1


#: What ``status`` can be, and what it means (docs/runs.md, "Failure modes").
STATUSES = {
    "completed": "trained to total_steps or stopped on train.stop_on_return; final eval done",
    "interrupted": "stopped by a signal (Ctrl-C, SIGTERM, a cluster's timeout); "
                   "checkpoints/last.pt holds the step it stopped at: resume=RUN_DIR continues",
    "diverged": "a loss or Q-value became NaN or infinite; checkpoints/last.pt is the last good "
                "checkpoint",
    "failed": "an error ended the run; its message is in `error`, the traceback in train.log",
}


@dataclass
class RunMetrics:
    #: One of STATUSES.
    status: str
    #: Why the run did not complete (null when it did).
    error: str | None = None
    #: Mean and (population) std of the final greedy evaluation's episode returns.
    eval_return_mean: float | None = None
    eval_return_std: float | None = None
    #: Episodes in the final evaluation.
    eval_episodes: int | None = None
    #: How many of them were cut by a time limit (the env's, or eval.max_episode_steps).
    eval_truncated: int | None = None
    #: Env steps trained for (summed over a vector env's sub-envs).
    env_steps: int | None = None
    #: Training episodes that ended.
    episodes: int | None = None
    #: Whether training ended early because an evaluation reached ``train.stop_on_return``.
    stopped_early: bool = False
    #: The step this run was last resumed from (``resume=``); null if it never was.
    resumed_from_step: int | None = None
    #: The ``total_steps`` this run had before it was resumed with a larger one (trained for
    #: longer); null if it never was.
    extended_from_steps: int | None = None
    #: Wall-clock seconds from the start of training to the end of the final evaluation.
    wall_seconds: float | None = None
    #: The part of ``wall_seconds`` spent in greedy evaluations.
    eval_seconds: float | None = None
    #: Env steps per second over the whole run, evaluations included.
    sps: float | None = None
    seed: int | None = None
    #: The torch device the run used, e.g. cpu or cuda:0.
    device: str | None = None
    #: torch's CPU threads in the run's process (device.threads).
    torch_threads: int | None = None
    #: The number of runs trained together with this one as a population (1: alone).
    population: int = 1
    schema_version: int = SCHEMA_VERSION

    #: The numbers an experiment tracker records as the run's final results.
    SUMMARY = ("eval_return_mean", "eval_return_std", "eval_episodes", "env_steps", "episodes",
               "wall_seconds", "sps")

    def summary(self) -> dict[str, float]:
        return summary_of(dataclasses.asdict(self))


def summary_of(metrics: dict) -> dict[str, float]:
    """The final results (``RunMetrics.SUMMARY``) of a run's metrics, as metrics.json holds
    them, that it has."""
    return {k: float(v) for k in RunMetrics.SUMMARY if (v := metrics.get(k)) is not None}


def write_metrics(run_dir: Path, metrics: RunMetrics) -> Path:
    path = Path(run_dir) / FILENAME
    text = json.dumps(dataclasses.asdict(metrics), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / FILENAME).read_text())


def read_run_metrics(run_dir: Path) -> RunMetrics:
    """metrics.json as a RunMetrics (fields it does not know are ignored)."""
    fields = {f.name for f in dataclasses.fields(RunMetrics)}
    return RunMetrics(**{k: v for k, v in read_metrics(run_dir).items() if k in fields})
