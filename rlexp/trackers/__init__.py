"""Experiment trackers beside TensorBoard (``logger=wandb``, ``logger=mlflow``): each run's
config, the same scalars under the same names at the same steps, its final metrics and files.

A tracker never costs a result. Everything it sends goes through a thread of its own, so the
training loop never waits on a network; a tracker that fails or stops answering is given up
with one warning line at the run's end, naming it and what it did not get, while TensorBoard
and ``metrics.json`` hold everything and the run's status is unchanged.

Points are sent once a checkpoint covers them (:meth:`TrackedRun.commit`): a run resumed from
that checkpoint logs again exactly the points after it, so the tracker's run, continued under
the id saved in the run directory (``trackers.json``), has every step once: no gap and no
duplicate.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rlexp import rundir
from rlexp.config import Config, ConfigError, dumped
from rlexp.errors import first_line

log = logging.getLogger("rlexp")

#: Each run's tracker ids, so that a resumed run continues the same tracker runs.
IDS_FILE = "trackers.json"
#: A sweep's own tracker ids (an MLflow parent run), in its directory.
SWEEP_IDS_FILE = ".trackers.json"
Point = tuple[str, float, int]
#: Seconds a run's end waits for a tracker to send what is left (its own, where it has one).
FINISH_TIMEOUT_S = 30.0


def saved_ids(directory: Path, name: str = IDS_FILE) -> dict[str, Any]:
    path = Path(directory) / name
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def save_id(directory: Path, tracker: str, ids: dict[str, Any], name: str = IDS_FILE) -> None:
    data = {**saved_ids(directory, name), tracker: ids}
    rundir.atomic_write(Path(directory) / name,
                        lambda tmp: tmp.write_text(json.dumps(data, indent=1)))


def sweep_dir_of(run_dir: Path) -> Path | None:
    """The sweep a run belongs to: the nearest directory above it that a multirun made (its
    swept-keys file), or None for a run alone."""
    for parent in list(Path(run_dir).resolve().parents)[:3]:
        if (parent / rundir.SWEPT_KEYS).is_file():
            return parent
    return None


class Tracker:
    """One tracker's run for one rlexp run. Subclasses implement the calls; all of them run in
    the run's sender thread, so they may block on the network."""

    name: ClassVar[str]

    def __init__(self, settings: Any, run_dir: Path, flat_config: dict[str, Any],
                 yaml_text: str, run_name: str):
        self.settings, self.run_dir = settings, Path(run_dir)
        self.flat_config, self.yaml_text, self.run_name = flat_config, yaml_text, run_name
        self.sweep_dir = sweep_dir_of(self.run_dir)

    def open(self) -> None:
        """Create the tracker's run, or continue the one whose id the run dir saved."""
        raise NotImplementedError

    def send_scalars(self, points: list[Point]) -> None:
        raise NotImplementedError

    def send_files(self, files: list[Path]) -> None:
        raise NotImplementedError

    def close(self, status: str, summary: dict[str, float]) -> None:
        """End the tracker's run with rlexp's status and its final metrics."""
        raise NotImplementedError

    def files_at_end(self, status: str) -> list[Path]:
        """Files of the run to send when it ends."""
        return []

    @property
    def finish_timeout_s(self) -> float:
        """How long the run's end waits for what is left to be sent."""
        return FINISH_TIMEOUT_S


def _failure(e: Exception) -> str:
    """A tracker's failure, in the one line its warning gives it."""
    return f"{type(e).__name__}: {first_line(str(e))}"


class TrackedRun:
    """One tracker of one run: the points logged since the last checkpoint, and the thread
    that sends what is committed."""

    def __init__(self, tracker: Tracker):
        self.tracker, self.timeout_s = tracker, tracker.finish_timeout_s
        self.pending: list[Point] = []
        self.failure: str | None = None
        self.unsent = {"scalar points": 0, "files": 0, "final metrics": 0}
        self.work: queue.Queue[tuple[str, int, Callable[[], None]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._send, name=f"rlexp-{tracker.name}",
                                       daemon=True)
        self.thread.start()
        self._put("run", 0, tracker.open)

    def _put(self, what: str, count: int, call: Callable[[], None]) -> None:
        self.work.put((what, count, call))

    def _send(self) -> None:
        while (item := self.work.get()) is not None:
            what, count, call = item
            if self.failure is None:
                try:
                    call()
                    continue
                except Exception as e:  # noqa: BLE001 - a tracker's failure is never the run's
                    self.failure = _failure(e)
                    log.debug("%s failed", self.tracker.name, exc_info=True)
            if what in self.unsent:
                self.unsent[what] += count

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.pending.append((tag, float(value), int(step)))

    def commit(self, before_step: int) -> None:
        """Send the points logged before ``before_step`` (a checkpoint's: a run resumed from
        it logs those from there on again)."""
        ready = [p for p in self.pending if p[2] < before_step]
        self.pending = [p for p in self.pending if p[2] >= before_step]
        if ready:
            self._put("scalar points", len(ready), lambda: self.tracker.send_scalars(ready))

    def finish(self, status: str, summary: dict[str, float], files: list[Path],
               resumable: bool) -> None:
        """Send the rest (a ``resumable`` run, stopped by a signal, keeps back what its resumed
        run will log again), end the tracker's run, and wait for the thread, at most
        ``timeout_s``."""
        if not resumable:
            self.commit(float("inf"))
        if files:
            self._put("files", len(files), lambda: self.tracker.send_files(files))
        self._put("final metrics", 1, lambda: self.tracker.close(status, summary))
        self.work.put(None)
        self.thread.join(self.timeout_s)
        if self.thread.is_alive():
            self.failure = self.failure or f"no answer within {self.timeout_s:g} s"
        if self.failure is not None:
            lost = ", ".join(f"{n} {what}" if what != "final metrics" else what
                             for what, n in self.unsent.items() if n) or "nothing yet"
            log.warning("%s: %s; not sent: %s (TensorBoard and metrics.json have everything)",
                        self.tracker.name, self.failure, lost)


def bounded(what: str, call: Callable[[], None], timeout_s: float) -> None:
    """``call`` in a thread, waited for at most ``timeout_s``; a failure or no answer is one
    warning line (a tracker's, for a sweep's parent run: never the sweep's failure)."""
    failure: list[str] = []

    def target() -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - reported in one line below
            failure.append(_failure(e))

    thread = threading.Thread(target=target, name="rlexp-tracker", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        failure.append(f"no answer within {timeout_s:g} s")
    if failure:
        log.warning("%s: %s; not sent (TensorBoard and the report have everything)", what,
                    failure[0])


def tracker_classes() -> dict[str, type[Tracker]]:
    """The trackers, by their logger option name (their modules import their packages only
    when a run selects them)."""
    from rlexp.trackers.mlflow import MlflowTracker
    from rlexp.trackers.wandb import WandbTracker

    return {cls.name: cls for cls in (MlflowTracker, WandbTracker)}


def send_to_finished_run(cfg: Config, run_dir: Path, status: str, files: list[Path]) -> None:
    """Files made after a run ended (an evaluation's video) sent to its trackers' runs, each
    continued under its saved id, then ended again with the run's status."""
    yaml_text, flat_config = dumped(cfg)
    for tracked in open_trackers(cfg.logger, run_dir, flat_config, yaml_text, cfg.run_name):
        tracked.finish(status, {}, files, resumable=False)


def open_trackers(logger_cfg: Any, run_dir: Path, flat_config: dict[str, Any], yaml_text: str,
                  run_name: str) -> list[TrackedRun]:
    """The trackers a run's ``logger`` config selects, started (each in its thread); a tracker
    whose package is not installed is a config error, said before training starts."""
    runs = []
    for name, cls in tracker_classes().items():
        settings = getattr(logger_cfg, name, None)
        if settings is not None and importlib.util.find_spec(name) is None:
            raise ConfigError(f"logger={name} needs the {name} package: "
                              f"pip install -e '.[{name}]'")
        if settings is not None:
            runs.append(TrackedRun(cls(settings, run_dir, flat_config, yaml_text, run_name)))
    return runs
