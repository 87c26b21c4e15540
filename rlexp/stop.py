"""Stopping a run cleanly on Ctrl-C, SIGTERM or a cluster's pre-timeout signal.

While a run trains, these signals only set :attr:`StopSignals.received`; the loop checks it after
every env step, then the run saves its checkpoint, flushes TensorBoard, writes ``metrics.json``
with ``status: interrupted`` and exits non-zero. A second Ctrl-C stops at once.

Under submitit (the ``submitit_*`` launchers) the pre-timeout signal (SIGUSR2) is submitit's: after
the checkpoint is saved, :meth:`StopSignals.forward` hands the signal to submitit's own handler,
which requeues the job; the requeued job resumes from the checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum


class StopSignals:
    """A context manager: SIGINT and SIGTERM (and SIGUSR2 when a scheduler such as submitit
    handles it) request a stop instead of ending the process. A no-op outside the main thread,
    where Python cannot install signal handlers."""

    def __init__(self) -> None:
        #: The signal that asked the run to stop, or None.
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        watched = [signal.SIGINT, signal.SIGTERM]
        if callable(signal.getsignal(signal.SIGUSR2)):  # someone (submitit) listens for it
            watched.append(signal.SIGUSR2)
        for signum in watched:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self.received = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def forward(self) -> None:
        """After a SIGUSR2, call the scheduler's own handler for it (submitit requeues the job
        and exits); for any other signal do nothing."""
        previous = self._previous.get(self.received)
        if self.received == signal.SIGUSR2 and callable(previous):
            previous(self.received, None)
