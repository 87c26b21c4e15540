"""``hydra/launcher=parallel``: Hydra's joblib launcher, its worker processes started with the
stop signals held.

A terminal's Ctrl-C reaches every process of its group, joblib's workers too. A worker that
got it before its job had rlexp's handlers (while it imports, or while Hydra sets the job up)
would end with a KeyboardInterrupt, which joblib raises in the sweep's process: the sweep would
end with a traceback, its other jobs killed before they saved their checkpoints. So each worker
starts with the signals held (:func:`rlexp.stop.held_stop_signals`); its job lets them through
once its handlers are set (:class:`rlexp.stop.StopSignals`), and between jobs it ignores them
(the sweep's stop marker keeps the next job from starting). Hydra's
launcher always asks joblib for its ``loky`` backend, so while this launcher launches, ``loky``
names a subclass of it that starts its processes so.
"""

from collections.abc import Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # the launchers extra is not installed: hydra/launcher=parallel says so
    JoblibLauncher = None

if JoblibLauncher is not None:
    class ParallelLauncher(JoblibLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
                   ) -> Sequence[JobReturn]:
            from joblib import register_parallel_backend
            from joblib._parallel_backends import LokyBackend

            from ._loky import HeldSignalsLokyBackend

            register_parallel_backend("loky", HeldSignalsLokyBackend)
            try:
                return super().launch(job_overrides, initial_job_idx)
            finally:
                register_parallel_backend("loky", LokyBackend)
