"""Benchmark suites (``suite=NAME``, conf/suite/): the tasks a study runs and each one's budget.

A suite's YAML sets ``suite.axis``, the override whose sweep values in ``hydra.sweeper.params``
are its tasks (``env``, ``env.game`` or ``env.id``), and ``suite.budget``, each task's env
steps by env id, from which ``total_steps`` is set whatever the agent. This module reads them
back for tools (``scripts/random_scores.py``, the tests) without running Hydra's sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from rlexp.config import CONFIG_DIR, Config, compose

SUITE_DIR = Path(CONFIG_DIR) / "suite"


@dataclass(frozen=True)
class Suite:
    name: str
    #: The override that picks a task, and its value for each task, in the suite's order.
    axis: str
    values: tuple[str, ...]
    #: Env steps of each task's runs, by env id.
    budget: dict[str, int]

    def task_config(self, value: str) -> Config:
        """The config of the suite's task ``value`` (one of ``values``), as a run composes it."""
        return compose([f"suite={self.name}", f"{self.axis}={value}"])


def names() -> list[str]:
    """Every suite of conf/suite/."""
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load(name: str) -> Suite:
    data = yaml.safe_load((SUITE_DIR / f"{name}.yaml").read_text())
    suite = data["suite"]
    values = str(data["hydra"]["sweeper"]["params"][suite["axis"]]).split(",")
    return Suite(name=suite["name"], axis=suite["axis"],
                 values=tuple(v.strip() for v in values), budget=dict(suite["budget"]))
