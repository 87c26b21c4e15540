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

from rlexp.checkpoint import atomic_write

SCHEMA_VERSION = 1
FILENAME = "metrics.json"


@dataclass
class RunMetrics:
    #: completed; (later) interrupted, diverged or failed.
    status: str
    #: Mean and (population) std of the final greedy evaluation's episode returns.
    eval_return_mean: float
    eval_return_std: float
    #: Episodes in the final evaluation.
    eval_episodes: int
    #: Env steps trained for (summed over a vector env's sub-envs).
    env_steps: int
    #: Training episodes that ended.
    episodes: int
    #: Whether training ended early because an evaluation reached ``train.stop_on_return``.
    stopped_early: bool
    #: The step this run was last resumed from (``resume=``); null if it never was.
    resumed_from_step: int | None
    #: Wall-clock seconds from the start of training to the end of the final evaluation.
    wall_seconds: float
    #: The part of ``wall_seconds`` spent in greedy evaluations.
    eval_seconds: float
    #: Env steps per second over the whole run, evaluations included.
    sps: float
    seed: int
    #: The torch device the run used, e.g. cpu or cuda:0.
    device: str
    schema_version: int = SCHEMA_VERSION


def write_metrics(run_dir: Path, metrics: RunMetrics) -> Path:
    path = Path(run_dir) / FILENAME
    text = json.dumps(dataclasses.asdict(metrics), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / FILENAME).read_text())
