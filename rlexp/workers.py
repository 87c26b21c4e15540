"""A sweep's populations trained in worker processes, several at once (one per core on a CPU).

A population's gradient steps are arithmetic-bound on a CPU, so one process trains it on one
core. ``hydra/launcher=population`` therefore splits each population into as many parts as it
may run processes (:func:`split`) and trains each part in a worker process of its own
(:func:`train_parts`). A member is the same, bit for bit, in a population of any size, so a
split changes no run's curves; each run still writes its own directory.

On a terminal the parent draws one progress bar for all of them (the env steps of every run)
and prints the workers' log lines above it: a bar per worker on one terminal line would
overwrite the others'. Every worker line names its part (``[population 1/2]``), in the log
files too.

Stop signals: the workers run in process groups of their own, so a terminal's Ctrl-C reaches
the parent only; the parent records each signal and hands it on to every worker once, so every
worker checkpoints its runs; a second signal stops them at once. A worker starts with the stop
signals blocked until its handlers are set, so a signal while it starts is held, not lost and
not a traceback. Parts not started by then are not started. A worker that dies without
reporting (killed, out of memory) leaves its runs recorded as failed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from rlexp import rundir
from rlexp.config import Config
from rlexp.logger import ConsoleBar, report_progress_to
from rlexp.metrics import RunMetrics, read_run_metrics
from rlexp.runner import record_failure, recording_failures, run_population
from rlexp.runtime import skip_exit_collection, uses_cuda
from rlexp.stop import StopNow, StopSignals, exit_status, held_stop_signals

log = logging.getLogger("rlexp")

#: Seconds between the parent's checks for stop signals to hand on while workers train.
POLL_S = 0.2
#: Seconds a worker has to end after a second stop signal before it is killed.
KILL_AFTER_S = 60.0
#: The console's log format (Hydra's), for the workers' lines.
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


@dataclass
class Part:
    """Runs that train as one population, and the files their log lines go to besides the
    console (their jobs' ``train.log``)."""

    cfgs: list[Config]
    run_dirs: list[Path]
    logs: list[Path]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def processes_for(cfg: Config, asked: int) -> int:
    """How many processes a population of runs like ``cfg`` trains in: ``asked``, or with -1 one
    per ``device.threads`` cores on a CPU (0 threads: all of them); one on a GPU, which a single
    process keeps busy."""
    if uses_cuda(cfg.device):
        if asked > 1:
            log.warning("processes=%d: a population on %s trains in one process (one process "
                        "keeps a GPU busy)", asked, cfg.device.type)
        return 1
    if asked != -1:
        return asked
    return max(cores() // (cfg.device.threads or cores()), 1)


def split(runs: Sequence, parts: int) -> list[list]:
    """``runs`` in ``parts`` consecutive parts of sizes that differ by one at most (fewer parts
    when there are fewer runs)."""
    parts = max(min(parts, len(runs)), 1)
    size, extra = divmod(len(runs), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(list(runs[start:end]))
        start = end
    return out


def train_parts(parts: list[Part], processes: int, stop: StopSignals,
                log_file: Path | None) -> dict[Path, RunMetrics]:
    """Train each part as a population in a worker process, ``processes`` at a time, their log
    lines also in ``log_file``; returns the metrics of every run that ended. Raises
    :class:`StopNow` after a second stop signal, once every worker has ended."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    pending = list(enumerate(parts))
    running: dict[Connection, _Worker] = {}
    results: dict[Path, RunMetrics] = {}
    handed_on = None  # the stop signal the workers were given
    hard_stop: StopNow | None = None
    bar = _Bar(parts) if sys.stderr.isatty() else None  # this process's lines go above it too
    try:
        while pending or running:
            try:
                while pending and len(running) < processes and stop.received is None:
                    index, part = pending.pop(0)
                    conn, worker = _start(context, index, len(parts), part, log_file,
                                          to_parent=bar is not None)
                    running[conn] = worker
                if not running:
                    break
                for conn in wait(list(running), timeout=POLL_S):
                    ended, finished = _receive(conn, running[conn], bar)
                    if ended:
                        results.update(_collect(conn, running.pop(conn), finished,
                                                stopped=stop.received))
                if stop.received is not None and handed_on != stop.received:
                    handed_on = stop.received
                    _hand_on(running, stop.received)
            except StopNow as e:  # a second signal: the workers stop at once too
                hard_stop = e
                _hand_on(running, e.signum)
    finally:
        if bar is not None:
            bar.close()
        for worker in running.values():  # after an error here: wait, kill those that hang
            worker.process.join(KILL_AFTER_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
    if hard_stop is not None:
        raise hard_stop
    return results


def _start(context, index: int, count: int, part: Part, log_file: Path | None,
           to_parent: bool) -> tuple[Connection, _Worker]:
    """Start the worker process of part ``index`` (of ``count``); returns the end of its pipe
    that this process reads."""
    ours, theirs = context.Pipe(duplex=False)
    logs = [*part.logs, *([log_file] if log_file else [])]
    label = f"population {index + 1}/{count}"
    process = context.Process(target=_train_part, args=(part, theirs, logs, label, to_parent),
                              name=f"rlexp-population-{index}")
    started = time.time()
    with held_stop_signals():  # until the worker has its handlers (a Ctrl-C while it
        process.start()  # imports, ~2 s, before it has a process group of its own)
    theirs.close()
    return ours, _Worker(process, part, started, index)


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    part: Part
    started: float  # time.time() at its start
    index: int  # its part's


class _Bar:
    """The parent's progress bar on a terminal: the env steps of every run of every part."""

    def __init__(self, parts: list[Part]):
        self.sizes = [len(part.cfgs) for part in parts]
        self.totals = [part.cfgs[0].total_steps for part in parts]  # a population's setting
        self.steps = [0] * len(parts)
        total = sum(n * t for n, t in zip(self.sizes, self.totals, strict=True))
        self.bar = ConsoleBar(total=total, desc=f"{sum(self.sizes)} runs", unit="step",
                              dynamic_ncols=True)

    def update(self, index: int, step: int) -> None:
        """Part ``index``'s population is at ``step``."""
        self.bar.update((step - self.steps[index]) * self.sizes[index])
        self.steps[index] = step

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _receive(conn: Connection, worker: _Worker, bar: _Bar | None
             ) -> tuple[bool, dict[Path, RunMetrics] | None]:
    """What a worker has sent: its progress and log lines go to ``bar``; returns whether it
    has ended, and the metrics it reported at its end (None: it ended without)."""
    try:
        while conn.poll():
            kind, value = conn.recv()
            if kind == "done":
                if bar is not None and all(m.status == "completed" for m in value.values()):
                    bar.update(worker.index, bar.totals[worker.index])  # some may end early
                return True, value
            if bar is None:
                continue
            if kind == "progress":
                bar.update(worker.index, value)
            else:  # a log line
                bar.write(value)
    except EOFError:  # it ended without reporting
        return True, None
    return False, None


def _hand_on(running: dict[Connection, _Worker], signum: int) -> None:
    for worker in running.values():
        with contextlib.suppress(ProcessLookupError):  # it has just ended
            os.kill(worker.process.pid, signum)


def _collect(conn: Connection, worker: _Worker, finished: dict[Path, RunMetrics] | None,
             stopped: int | None) -> dict[Path, RunMetrics]:
    """The metrics of a worker's runs: as it reported them (``finished``); else (a second stop
    signal ended it, or it died) as its runs wrote them, and a run that wrote nothing failed
    unless a stop signal ended the worker before the run started."""
    conn.close()
    worker.process.join()
    if finished is not None:
        return finished
    ended: dict[Path, RunMetrics] = {}
    message = f"the worker process training it ended with exit code {worker.process.exitcode}"
    for cfg, run_dir in zip(worker.part.cfgs, worker.part.run_dirs, strict=True):
        metrics = Path(run_dir) / rundir.METRICS
        if metrics.is_file() and metrics.stat().st_mtime >= worker.started:  # its own end
            ended[run_dir] = read_run_metrics(run_dir)
        elif stopped is None:
            log.error("run %s failed: %s", run_dir, message)
            record_failure(run_dir, message, cfg.seed)
            ended[run_dir] = RunMetrics(status="failed", error=message, seed=cfg.seed)
    return ended


def _train_part(part: Part, conn: Connection, logs: list[Path], label: str,
                to_parent: bool) -> None:
    """A worker process: train ``part`` as one population and report its runs' metrics; its
    lines name it (``label``). ``to_parent``: its progress and console lines go to the parent,
    which draws one bar for every worker."""
    # Its own process group: a terminal's Ctrl-C reaches the parent only, which hands each
    # signal on once (a signal delivered twice would count as asked twice).
    os.setpgrp()
    skip_exit_collection()
    fmt = LOG_FORMAT.replace(" - ", f"[{label}] - ", 1)
    console = _ToParent(conn) if to_parent else logging.StreamHandler()
    console.setFormatter(logging.Formatter(fmt))
    logging.getLogger().addHandler(console)
    logging.getLogger().setLevel(logging.INFO)
    if to_parent:
        report_progress_to(lambda step: conn.send(("progress", step)))
    # A stop signal that came while it started (held) is now a stop request like any other;
    # the terminal's and the parent's copy of one Ctrl-C are one signal while pending.
    with StopSignals() as stop, logging_to(logs, fmt):
        try:
            with recording_failures(part.cfgs, part.run_dirs, sweeping=True) as finished:
                run_population(part.cfgs, part.run_dirs, stop, finished)
        except StopNow as e:  # the runs wrote how they ended; the parent reads that
            log.error("%s", e)
            sys.exit(exit_status(e.signum))
    conn.send(("done", finished))


class _ToParent(logging.Handler):
    """A worker's console: its lines, formatted, sent to the parent to print."""

    def __init__(self, conn: Connection):
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.conn.send(("log", self.format(record)))
        except Exception:  # the parent is gone: as logging does with a broken stream
            self.handleError(record)


@contextlib.contextmanager
def logging_to(files: Sequence[Path], fmt: str = LOG_FORMAT) -> Iterator[None]:
    """Log lines (in format ``fmt``) also into each of ``files`` (appended) while the block
    runs."""
    handlers = [logging.FileHandler(path) for path in files]
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
