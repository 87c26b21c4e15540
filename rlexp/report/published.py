"""Published results as reference rows (``published_results.csv``): a reference's per-task final
score under a stated protocol, shown beside a study's runs only where every run of that task
was trained and evaluated under the same protocol (the env's settings that change scores, the
budget, the evaluation's epsilon), and otherwise named with what differs: protocols are never
mixed.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from rlexp.report.runs import Run


@dataclass(frozen=True)
class PublishedResult:
    source: str
    agent: str
    task: str
    seeds: int
    mean: float
    std: float
    #: The config values (flattened keys) the result was obtained under.
    protocol: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return f"{self.agent}: {self.mean:g} ± {self.std:g} ({self.seeds} seeds)"

    def differences(self, config: dict[str, Any]) -> list[str]:
        """How a run's flattened config departs from the protocol (empty: it follows it)."""
        return [f"{key} is {config.get(key)!r} here, {value!r} in the reference"
                for key, value in self.protocol if config.get(key) != value]


@functools.cache
def published_results() -> tuple[PublishedResult, ...]:
    text = resources.files("rlexp.report").joinpath("published_results.csv").read_text()
    return tuple(PublishedResult(
        source=row["source"], agent=row["agent"], task=row["task"], seeds=int(row["seeds"]),
        mean=float(row["mean"]), std=float(row["std"]),
        protocol=tuple((key, yaml.safe_load(value)) for key, value in (
            item.split("=", 1) for item in row["protocol"].split(";"))))
        for row in csv.DictReader(io.StringIO(text)))


def references(runs: list[Run]) -> list[tuple[PublishedResult, list[str]]]:
    """Each published result on a task of ``runs``, with what the task's runs do differently
    (empty: the same protocol; it may be drawn beside them)."""
    out = []
    for result in published_results():
        configs = [r.config for r in runs if r.env_id == result.task and r.config]
        if configs:
            differences = sorted({d for c in configs for d in result.differences(c)})
            out.append((result, differences))
    return out


def markdown(found: list[tuple[PublishedResult, list[str]]]) -> list[str]:
    """summary.md's section on the published results of the runs' tasks."""
    if not found:
        return []
    lines = ["## Published results", ""]
    for result, differences in found:
        head = f"- {result.task}, {result.label}; {result.source}"
        lines.append(f"{head}: same protocol, drawn in the figures" if not differences else
                     f"{head}: not comparable, not drawn: {'; '.join(differences)}")
    return lines
