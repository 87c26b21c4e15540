"""``python -m rlexp.train [overrides]``: compose the config, build the run, train, write results.

The only module that knows about ``@hydra.main``. Examples::

    python -m rlexp.train agent=dqn env=cartpole seed=1
    python -m rlexp.train agent=qnet env=toy optimizer=sgd agent.network.hidden=[]
    python -m rlexp.train -m optimizer=sgd,adam seed=0,1,2
    python -m rlexp.train --help              # groups, options and the composed config

A run directory holds ``.hydra/`` (Hydra's record of the composition), ``config.yaml`` (the
resolved config), the TensorBoard event file, ``train.log``, ``checkpoints/last.pt`` (to resume
from), ``checkpoints/final.pt`` (the trained agent) and ``metrics.json``. Bad input ends the
command with one line naming the bad key or value and what is allowed (exit status 2) before
any training starts; set ``HYDRA_FULL_ERROR=1`` for a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlexp import rundir
from rlexp.config import CONFIG_DIR
from rlexp.errors import INPUT_ERRORS, SHOW_TRACEBACK, exit_with_one_line
from rlexp.jobs import end_job, open_job, train_job
from rlexp.rundir import WriteError
from rlexp.runtime import skip_exit_collection
from rlexp.stop import StopNow, StopSignals, exit_status


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    """One job: a run, or ``seeds`` runs trained together as a population; returns the mean of
    their final eval returns, which a sweeper (e.g. Optuna) maximises.

    A single run exits non-zero unless it completed. In a sweep, a run that fails, diverges or
    is interrupted is recorded in its metrics.json and the job returns None (the report at the
    sweep's end lists the run and the sweep exits non-zero); a job that finds a run in its own
    directory (a requeued cluster job, a resumed sweep) continues it (see :func:`_prepare`).
    """
    skip_exit_collection()  # also where Hydra's launcher runs jobs (a joblib worker)
    job = None
    try:
        job = open_job(cfg)
        if job is None:
            return None
        with StopSignals() as stop:
            if job.todo:
                job.results.update(train_job(job, stop))
    except INPUT_ERRORS as e:  # outside a sweep: found as training began (e.g. a checkpoint)
        rundir.discard_if_unused(job.dir)
        exit_with_one_line(e)  # raising would make Hydra print a second line
    finally:
        rundir.unlock(Path(HydraConfig.get().runtime.output_dir))
    return end_job(job, stop)


def main() -> None:
    """Console entry point: Hydra's run, with input errors reported as one line (exit 2)."""
    # Hydra then re-raises errors instead of printing several lines itself; we print one.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # Hydra's own parser would print its usage and an error; one line is enough.
    unknown = [a for a in get_args_parser().parse_known_args()[1] if a.startswith("-")]
    if unknown:
        print(f"rlexp: error: unknown option {unknown[0]}; see python -m rlexp.train --help",
              file=sys.stderr)
        sys.exit(2)
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:  # ours, from the schemas (--hydra-help: Hydra's)
        from rlexp.help import help_text, search_path_dirs

        print(help_text(search_path_dirs(args)))
        return
    sweeping = any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in args)
    if sweeping and any(a.lower() == "resume=true" for a in args) and not any(
            a.startswith("hydra.sweep.dir=") for a in args):
        print("rlexp: error: resume=true in a sweep continues an earlier sweep: name its "
              "directory with hydra.sweep.dir=outputs/multirun/DATE/TIME", file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()  # a multirun's stop signals: rlexp.report.SweepReport
    except KeyboardInterrupt:  # where no run or sweep handles it (e.g. while Hydra composes)
        print("rlexp: interrupted by SIGINT", file=sys.stderr)
        sys.exit(exit_status(signal.SIGINT))
    except StopNow as e:
        print(f"rlexp: {e}", file=sys.stderr)
        sys.exit(exit_status(e.signum))
    except INPUT_ERRORS as e:
        exit_with_one_line(e)
    except OSError as e:  # Hydra could not create the run or sweep directory; a full disk
        if SHOW_TRACEBACK:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"rlexp: error: {e}" if isinstance(e, WriteError) else
              f"rlexp: error: cannot write the output directory{where}: {e.strerror or e}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    skip_exit_collection()
    main()
