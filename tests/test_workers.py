"""Worker processes (rlexp.workers): how populations are split over them, and how they hold
stop signals."""

from __future__ import annotations

import signal
import threading

from rlexp import stop as stop_module
from rlexp import workers
from rlexp.stop import StopSignals
from tests.conftest import (
    compose_config,
)


def test_populations_split_into_parts_of_near_equal_size_one_per_process(monkeypatch):
    assert [len(p) for p in workers.split(list(range(7)), 3)] == [3, 2, 2]
    assert workers.split([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]  # in order: jobs stay together
    assert workers.split([1, 2], 8) == [[1], [2]]
    cpu, cuda, cuda1 = (compose_config(d) for d in (
        ["device=cpu"], ["device=cuda"], ["device=cuda", "device.type=cuda:1"]))
    assert workers.processes_for(cpu, -1) == workers.cores() and workers.processes_for(cpu, 3) == 3
    assert workers.processes_for(cuda, -1) == workers.processes_for(cuda1, -1) == 1  # a GPU: one
    # Threads per process leave fewer processes: the cores are not oversubscribed.
    monkeypatch.setattr(workers, "cores", lambda: 8)
    assert [workers.processes_for(compose_config(["device=cpu", f"device.threads={t}"]), -1)
            for t in (1, 2, 3, 0, 16)] == [8, 4, 2, 1, 1]


def test_a_worker_holds_the_stop_signals_until_its_job_and_ignores_them_after():
    """A sweep's worker starts with the stop signals held: its job's handlers get the one that
    came meanwhile; after the job (other threads may have started) it ignores them."""
    main = threading.main_thread().ident
    before = {s: signal.getsignal(s) for s in stop_module.STOP_SIGNALS}
    try:
        with stop_module.held_stop_signals():
            signal.pthread_kill(main, signal.SIGTERM)  # pending, not delivered
            assert signal.SIGTERM in signal.sigpending()
            with StopSignals() as stop:
                assert stop.received == signal.SIGTERM
                assert not set(stop_module.STOP_SIGNALS) & signal.pthread_sigmask(
                    signal.SIG_BLOCK, [])
            for signum in stop_module.STOP_SIGNALS:
                assert signal.getsignal(signum) == signal.SIG_IGN
            with StopSignals() as next_job:  # nothing carried over
                assert next_job.received is None
                signal.pthread_kill(main, signal.SIGINT)
                assert next_job.received == signal.SIGINT
        assert not set(stop_module.STOP_SIGNALS) & signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    with StopSignals():  # not held when it began: its handlers are put back
        pass
    assert {s: signal.getsignal(s) for s in stop_module.STOP_SIGNALS} == before
