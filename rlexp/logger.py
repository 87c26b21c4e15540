"""What a run reports while it trains: TensorBoard scalars, config and hparams, and the console.

Scalar names are stable and grouped, and the x-axis is always env steps. Every ``log.every_steps``:
``train/loss`` and ``train/q_mean`` (means over the updates since the last point),
``train/episode_return`` and ``train/episode_length`` (means over the episodes that ended since
the last point; none when no episode ended), the agent's ``log_scalars()`` (``train/epsilon``
and ``train/lr`` for Q-learning agents) and ``time/sps``; and at the end of every run the same
for the last, partial interval. At every evaluation: ``eval/return_mean`` and
``eval/return_std`` over the greedy episodes, and ``eval/truncated``, the fraction of them cut by
a time limit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rlexp.rundir import write_error

if TYPE_CHECKING:
    from rlexp.trackers import TrackedRun

log = logging.getLogger("rlexp")
# A log file on a full disk must not print a traceback per line on the console: logging's
# setting for production, under which a handler that fails drops the record (the failure that
# filled the disk is reported in its own line).
logging.raiseExceptions = False


def traceback_to_log_files(e: BaseException) -> None:
    """``e``'s traceback, into the log files only (train.log): for a failure the console
    already shows in one line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "traceback: %s", (
        type(e).__name__,), (type(e), e, e.__traceback__))
    for logger in (log, logging.getLogger()):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)


class TensorBoardLogger:
    """Scalars, text and hparams written to the event file in the run directory itself, and
    the scalars mirrored to the run's experiment trackers (rlexp.trackers), if any."""

    def __init__(self, run_dir: Path, purge_step: int | None = None,
                 trackers: list[TrackedRun] = ()):
        # purge_step: points at or after it, logged by an earlier process in this run dir
        # (one that was resumed from a checkpoint), are hidden from TensorBoard.
        if purge_step is not None:
            _wait_for_a_later_second(run_dir)
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        #: The step of the latest point written, and every scalar written at that step.
        self.latest_step: int | None = None
        self.latest_points: dict[str, float] = {}
        #: The trackers that get the same scalars; emptied once they are ended.
        self.trackers = list(trackers)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)
        for tracker in self.trackers:
            tracker.scalar(tag, value, step)
        if step != self.latest_step:
            self.latest_step, self.latest_points = step, {}
        self.latest_points[tag] = value

    def flush(self) -> None:
        """Put every point written so far on disk (SummaryWriter buffers them for minutes)."""
        try:
            self.writer.flush()
        except OSError as e:  # e.g. a full disk
            raise write_error(Path(self.writer.get_logdir()) / "events.out.tfevents.*", e) from e

    def config(self, yaml_text: str, flat_config: dict[str, Any]) -> None:
        """The resolved config as text, and the hparams session for the HParams tab.

        The hparams session goes into this run's own event file, unlike ``add_hparams``, which
        makes a sub-run, so the run is listed once. No experiment summary is written: from the
        sessions of all runs under its logdir TensorBoard then infers one, marks the
        hyperparameters that differ between runs (the swept ones), and lists every scalar as a
        metric, valued at its last point (e.g. the final ``eval/return_mean``).
        """
        indented = "\n".join("    " + line for line in yaml_text.splitlines())
        self.writer.add_text("config", indented)  # indented: rendered as a code block
        _experiment, session_start, session_end = hparams_summaries(flat_config, {})
        for summary in (session_start, session_end):
            self.writer.file_writer.add_summary(summary)

    def commit(self, before_step: int) -> None:
        """A checkpoint covers the points before ``before_step``: the trackers may have them."""
        for tracker in self.trackers:
            tracker.commit(before_step)

    def end_trackers(self, status: str, summary: dict[str, float] | None = None,
                     resumable: bool = False) -> None:
        """End the trackers' runs (once): a ``resumable`` run's points after its checkpoint
        are left to the run that resumes it."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.finish(status, summary or {}, tracker.tracker.files_at_end(status),
                           resumable)

    def close(self) -> None:
        self.writer.close()


def _wait_for_a_later_second(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second it
    was created in, then the pid: a resumed run's file must start in a later second than the
    files before it, or its purge of their later points can be read first and lost."""
    stamps = []
    for path in Path(run_dir).glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit():
            stamps.append(int(stamp))
    if stamps and (wait := max(stamps) + 1 - time.time()) > 0:
        time.sleep(wait)


#: Where a process's progress goes instead of its own bar (see :func:`report_progress_to`).
_progress_sink: Callable[[int], None] | None = None


def report_progress_to(sink: Callable[[int], None]) -> None:
    """Give this process's progress, the env step (at the start, then every 0.1% of the run),
    to ``sink`` instead of drawing a bar: a population's worker process whose parent draws
    one bar for every worker on the terminal they share (two bars on one line overwrite each
    other)."""
    global _progress_sink
    _progress_sink = sink


class ConsoleBar(tqdm):
    """tqdm's progress bar, with this process's console log lines printed above it while it is
    drawn (tqdm's logging redirect) instead of into its line.

    Its lock is a thread lock: tqdm's default one holds a multiprocessing semaphore, for bars of
    forked processes that share it; rlexp's processes draw their own bars (or hand their steps
    to the parent's), and a process killed with the semaphore (a population's worker) makes
    multiprocessing warn of a leak at exit."""

    def __new__(cls, *args, **kwargs):
        tqdm.set_lock(threading.RLock())  # before tqdm's __new__ takes the lock
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        self._redirect = contextlib.ExitStack()  # before tqdm's init: its __del__ closes
        super().__init__(*args, **kwargs)
        if not self.disable:
            self._redirect.enter_context(logging_redirect_tqdm())

    def close(self) -> None:
        self._redirect.close()
        super().close()


class Progress:
    """A progress bar with ETA and the latest return on a terminal; plain periodic log lines
    (about every 10% of the run) when stderr is not a terminal, as in CI or a cluster job;
    or the steps handed to another process that draws the bar (:func:`report_progress_to`)."""

    def __init__(self, total_steps: int, start_step: int = 0):
        self.total = total_steps
        self.last_return: float | None = None
        self.sink = _progress_sink
        self.bar = ConsoleBar(total=total_steps, initial=start_step, unit="step",
                              dynamic_ncols=True,
                              disable=self.sink is not None or not sys.stderr.isatty())
        self.started, self.start_step, self.step = time.perf_counter(), start_step, start_step
        # Called every env step, so it returns at once until the next redraw (0.1% of the run)
        # or the next plain line (10%) is due.
        lines = self.bar.disable and self.sink is None
        self.every = max(total_steps // (10 if lines else 1000), 1)
        self.next_update = start_step + self.every
        if self.sink is not None:
            self.sink(start_step)

    def update(self, step: int, last_return: float | None) -> None:
        if last_return is not None:
            self.last_return = last_return
        if step < self.next_update:
            return
        self.next_update += self.every
        ret = "n/a" if self.last_return is None else f"{self.last_return:.1f}"
        if self.sink is not None:
            self.sink(step)
        elif not self.bar.disable:
            self.bar.set_postfix(train_return=ret, refresh=False)
            self.bar.update(step - self.step)
        else:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
            log.info("step %d/%d (%d%%) | last training episode's return %s | %.0fs elapsed, "
                     "ETA %.0fs",
                     step, self.total, 100 * step // self.total, ret, elapsed, eta)
        self.step = step

    def close(self) -> None:
        self.bar.close()
