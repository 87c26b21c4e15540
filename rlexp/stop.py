"""Stopping a run, or a whole sweep, cleanly on Ctrl-C, SIGTERM or a cluster's pre-timeout signal.

While a run trains, these signals only set :attr:`StopSignals.received`; the loop checks it after
every env step and every evaluation episode step, then the run saves its checkpoint, flushes
TensorBoard, writes ``metrics.json`` with ``status: interrupted`` and exits non-zero. The same
signal a second time (Ctrl-C twice, SIGTERM twice) stops at once: :class:`StopNow` is raised
wherever the run is, and the last checkpoint written stays as it was. A repeat within
``REPEAT_AFTER_S`` of the first is the same request delivered twice (a terminal's Ctrl-C reaches
a job through its process group and again through a launcher that forwards it, as submitit's
does), not a second one.

In a sweep, an interrupted job leaves a marker in the sweep directory (:func:`request_sweep_stop`)
so that the jobs after it do not start; the sweep's parent process records the signal the same
way (:class:`SweepSignals`) instead of raising in the middle of its launcher, and the sweep ends
with its report and one line per unfinished run.

A process that a sweep starts to train jobs (a worker of ``hydra/launcher=population`` or of
``hydra/launcher=parallel``) starts with the stop signals held (:func:`held_stop_signals`): a
Ctrl-C while it imports and sets its job up waits, pending, for the handlers of its
:class:`StopSignals` instead of ending it with a KeyboardInterrupt traceback.

Under submitit (the ``submitit_*`` launchers) the pre-timeout signal (SIGUSR2) is submitit's: after
the checkpoint is saved, :meth:`StopSignals.forward` hands the signal to submitit's own handler,
which requeues the job; the requeued job resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from types import FrameType

from rlexp.rundir import SWEEP_STOP, atomic_write

#: Seconds after the first signal before the same signal counts as asked twice.
REPEAT_AFTER_S = 0.5
#: The signals that ask a run to stop (and that a starting worker holds).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopNow(KeyboardInterrupt):
    """The same stop signal a second time: the user does not want to wait for a checkpoint."""

    def __init__(self, signum: int, message: str | None = None):
        super().__init__(message or f"stopped at once by a second {signal.Signals(signum).name}")
        self.signum = signum

    def __str__(self) -> str:
        return str(self.args[0])


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum


class StopSignals:
    """A context manager: SIGINT and SIGTERM (and SIGUSR2 when a scheduler such as submitit
    handles it) request a stop instead of ending the process. A no-op outside the main thread,
    where Python cannot install signal handlers.

    Once the handlers are set, the signals are let through: a process that started with them
    held (a sweep's worker) gets the one that came meanwhile, as a stop request like any
    other. Such a process ignores them after the block, until its next job: a thread started
    meanwhile (tqdm's monitor) does not hold them, and a sweep that was asked to stop does not
    start its next job anyway (:func:`request_sweep_stop`)."""

    def __init__(self) -> None:
        #: The signal that asked the run to stop, or None.
        self.received: int | None = None
        self._received_at = 0.0
        self._previous: dict[int, object] = {}
        self._mask: set[int] | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        watched = [*STOP_SIGNALS]
        if callable(signal.getsignal(signal.SIGUSR2)):  # someone (submitit) listens for it
            watched.append(signal.SIGUSR2)
        for signum in watched:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        return self

    def __exit__(self, *exc) -> None:
        held = set(self._mask or ()) & set(STOP_SIGNALS)
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if signum in held else handler)
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signum and signum != signal.SIGUSR2 and \
                time.monotonic() - self._received_at >= REPEAT_AFTER_S:
            raise StopNow(signum)  # asked twice: the user does not want to wait
        if self.received is None:
            self.received, self._received_at = signum, time.monotonic()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def forward(self) -> None:
        """After a SIGUSR2, call the scheduler's own handler for it (submitit requeues the job
        and exits); for any other signal do nothing."""
        previous = self._previous.get(self.received)
        if self.received == signal.SIGUSR2 and callable(previous):
            previous(self.received, None)


class SweepSignals(StopSignals):
    """The sweep's parent process: the first SIGINT or SIGTERM marks the sweep as stopping
    (:func:`request_sweep_stop`) instead of raising inside the launcher; the jobs running then
    stop themselves (a Ctrl-C reaches every process of the terminal's group) and save their
    checkpoints, the others do not start, and the sweep ends with its report."""

    def __init__(self, sweep_dir: Path, jobs_are_grandchildren: bool = False) -> None:
        super().__init__()
        self.sweep_dir = sweep_dir
        # submitit's local executor runs each job under a controller process of its own that
        # has no SIGINT handler: started with SIGINT ignored (children inherit that), the
        # controllers wait quietly while their jobs, which install their own handler, stop.
        self.ignore_sigint = jobs_are_grandchildren

    def __enter__(self) -> SweepSignals:
        super().__enter__()
        if self.ignore_sigint and signal.SIGINT in self._previous:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        super()._handle(signum, frame)
        request_sweep_stop(self.sweep_dir, signum)


@contextlib.contextmanager
def held_stop_signals() -> Iterator[None]:
    """The stop signals held back (blocked) in this thread while the block runs. A process
    started in it starts with them held (the mask survives fork and exec) until its
    :class:`StopSignals` lets them through; one that comes meanwhile waits, pending."""
    # Started first: multiprocessing starts its resource tracker with the first process or
    # lock that needs it, and lets these signals through once it has.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def request_sweep_stop(sweep_dir: Path, signum: int) -> None:
    """Mark the sweep in ``sweep_dir`` as stopping: jobs that have not started do not start."""
    atomic_write(Path(sweep_dir) / SWEEP_STOP, lambda tmp: tmp.write_text(f"{int(signum)}\n"))


def sweep_stop_requested(sweep_dir: Path) -> int | None:
    """The signal that stopped the sweep in ``sweep_dir``, or None."""
    try:
        return int((Path(sweep_dir) / SWEEP_STOP).read_text())
    except (OSError, ValueError):
        return None


def clear_sweep_stop(sweep_dir: Path) -> None:
    (Path(sweep_dir) / SWEEP_STOP).unlink(missing_ok=True)
