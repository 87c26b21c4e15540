"""``hydra/launcher=population``: a multirun's jobs trained as populations.

Hydra finds launchers in the ``hydra_plugins`` package. Each job is set up as Hydra's basic
launcher sets it up (its directory, ``.hydra/`` record and ``train.log``), then every job's runs
that can train together (:func:`rlexp.populations.population_key`: they differ only in seeds and
per-member settings such as the learning rate) train as one population
(:func:`rlexp.jobs.train_jobs`), split over ``hydra.launcher.processes`` worker processes (one
per core by default on a CPU: :mod:`rlexp.workers`); populations that cannot be joined train
one after another.
Each job returns what it would return launched alone, so sweepers (Optuna) drive it unchanged.
Each job's ``train.log`` gets its population's training lines, and the sweep's
``population.log`` all of them.
"""

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_loader import ConfigLoader
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

#: The log of a sweep's populations, in its directory.
POPULATION_LOG = "population.log"


@dataclass
class PopulationLauncherConf:
    _target_: str = (
        "hydra_plugins.rlexp_population_launcher.population_launcher.PopulationLauncher")
    #: Processes training at once: each population is split into this many parts, each
    #: trained in a worker process (a part is still one population). -1: one per core on a
    #: CPU, one on a GPU (env RLEXP_JOBS sets it, as for hydra/launcher=parallel); 1: every
    #: population in this process, one after another.
    processes: int = "${oc.decode:${oc.env:RLEXP_JOBS,-1}}"  # type: ignore[assignment]


ConfigStore.instance().store(group="hydra/launcher", name="population",
                             node=PopulationLauncherConf, provider="rlexp")


class ComposedOnce:
    """Each job's config composed once, for the sweeper's check and this launcher's run.

    Hydra's basic sweeper composes every job's config to check a batch before it launches it,
    and a launcher composes it again to run it (~75 ms a job here: 1.2 s of a 16-job sweep's
    set-up, 5 s of a 64-job one's). This launcher runs the jobs in the sweeper's process, so
    the configs the check composed (through the loader, which :func:`composed_once` wraps) are
    kept until the launcher takes them; a job no check composed (Optuna's sweeper checks none)
    is composed when it is taken, and nothing is kept for it.
    """

    def __init__(self, loader: ConfigLoader) -> None:
        self._compose = loader.load_sweep_config
        self._kept: dict[tuple, DictConfig] = {}
        loader.load_sweep_config = self._keep  # what a sweeper calls to check a batch

    def _keep(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        composed = self._compose(master_config, sweep_overrides)
        self._kept[(id(master_config), tuple(sweep_overrides))] = copy.deepcopy(composed)
        return composed

    def take(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config: the one its check composed, else composed now."""
        kept = self._kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return self._compose(master_config, sweep_overrides) if kept is None else kept


def composed_once(loader: ConfigLoader) -> ComposedOnce:
    """``loader``'s :class:`ComposedOnce` (one per loader: a second launcher shares it)."""
    wrapped = getattr(loader.load_sweep_config, "__self__", None)
    return wrapped if isinstance(wrapped, ComposedOnce) else ComposedOnce(loader)


class PopulationLauncher(Launcher):
    def __init__(self, processes: int) -> None:
        super().__init__()
        self.processes = processes
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.configs: ComposedOnce | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        # The task function is rlexp's: its two halves (open_job, train_jobs) run here.
        self.config, self.hydra_context = config, hydra_context
        self.configs = composed_once(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        from rlexp import jobs, rundir

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Preparing %d jobs to train as populations", len(job_overrides))
        returns: list[JobReturn] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.configs.take(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            returns.append(run_job(hydra_context=self.hydra_context,
                                   task_function=jobs.open_job, config=sweep_config,
                                   job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        opened = [r.return_value if r.status == JobStatus.COMPLETED else None for r in returns]
        try:
            values = jobs.train_jobs(opened, self.processes, sweep_dir / POPULATION_LOG)
        finally:
            for r in returns:
                rundir.unlock(Path(r.hydra_cfg.hydra.runtime.output_dir))
        for r, value in zip(returns, values, strict=True):
            if r.status == JobStatus.COMPLETED:
                r.return_value = value
        return returns
