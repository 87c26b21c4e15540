"""joblib's loky backend, its worker processes started with the stop signals held (imported
only when a parallel sweep launches: joblib takes ~0.15 s to import; Hydra's plugin scan skips
modules whose names start with ``_``)."""

from joblib._parallel_backends import LokyBackend

from rlexp.stop import held_stop_signals


class HeldSignalsLokyBackend(LokyBackend):
    """Loky starts its workers when the pool is made or resized (``configure``) and when a job
    is submitted to a pool short of workers (``submit``): both with the signals held."""

    def configure(self, *args, **kwargs):
        with held_stop_signals():
            return super().configure(*args, **kwargs)

    def submit(self, *args, **kwargs):
        with held_stop_signals():
            return super().submit(*args, **kwargs)
