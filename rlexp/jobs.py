"""Hydra's jobs: what a job (one run, or one per seed) trains, in its output directory; a
sweep's jobs trained as populations (:func:`train_jobs`, for the population launcher); and how a
job ends (its result for a sweeper, or the exit status and how to continue it)."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rlexp import build, rundir, workers
from rlexp.config import (
    Config,
    ConfigError,
    config_from_dict,
    validate,
)
from rlexp.errors import INPUT_ERRORS, describe_error, exit_with_one_line
from rlexp.metrics import RunMetrics, read_run_metrics
from rlexp.populations import population_key
from rlexp.rundir import RunDirError
from rlexp.runner import record_failure, recording_failures, run_population
from rlexp.stop import StopSignals, exit_status, request_sweep_stop, sweep_stop_requested

log = logging.getLogger("rlexp")


@dataclass
class Job:
    """A Hydra job about to train: its runs (one, or one per seed) and what it knows of them."""

    dir: Path
    cfg: Config
    sweeping: bool
    #: The sweep's directory and the job's command-line overrides (to say how to continue).
    sweep_dir: Path
    overrides: list[str]
    #: Every run of the job, and those still to train (configs set to resume where they can).
    runs: list[tuple[Config, Path]]
    todo: list[tuple[Config, Path]]
    #: The metrics of the runs that ended (before, or once trained).
    results: dict[Path, RunMetrics]


def open_job(cfg: DictConfig) -> Job | None:
    """The job Hydra is running now (in its output directory), validated, with what each of its
    runs needs; None when it has nothing to train (the sweep was asked to stop, or in a sweep
    its config was refused: recorded in the job's directory). Outside a sweep, bad input ends
    the command with one line."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if sweeping and sweep_stop_requested(Path(hydra_cfg.sweep.dir)):
            log.info("the sweep was asked to stop: %s does not start", job_dir.name)
            return None
        typed = validate(cfg)
        if sweeping and typed.resume is not None and not rundir.resumes_latest(typed.resume):
            raise ConfigError(f"resume={typed.resume}: a sweep resumes with resume=true and "
                              "its hydra.sweep.dir, not a run directory")
        if not sweeping and typed.resume is not None and not rundir.resumes_latest(typed.resume):
            typed = resumed_config(typed, list(hydra_cfg.overrides.task))
        if typed.seeds == 1:
            runs = [(typed, job_dir)]
        else:  # seed, seed + 1, ... each in a directory of its own, trained as a population
            runs = [(dataclasses.replace(typed, seed=seed, seeds=1), rundir.seed_dir(job_dir, seed))
                    for seed in range(typed.seed, typed.seed + typed.seeds)]
        job = Job(job_dir, typed, sweeping, Path(hydra_cfg.sweep.dir),
                  list(hydra_cfg.overrides.task), runs, [], {})
        for run_cfg, run_dir in runs:
            auto = sweeping or run_dir != job_dir  # the job decides what to do with it
            run_cfg = _prepare(run_cfg, run_dir) if auto else run_cfg
            if run_cfg is None:  # done before: completed, or failed and not retried
                job.results[run_dir] = read_run_metrics(run_dir)
            else:
                job.todo.append((run_cfg, run_dir))
        return job
    except INPUT_ERRORS as e:  # refused before training; in a sweep, as a run fails
        if sweeping:  # the job's directory stays, saying why it failed
            record_failure(job_dir, describe_error(e), cfg.get("seed"))
            log.error("run failed: %s", describe_error(e))
            return None
        rundir.discard_if_unused(job_dir)
        exit_with_one_line(e)  # raising would make Hydra print a second line


#: Config groups whose options set keys anywhere in the config (``# @package _global_``).
GLOBAL_GROUPS = ("experiment", "tuned", "hparams_search")


def resumed_config(typed: Config, overrides: list[str]) -> Config:
    """The config ``resume=RUN_DIR`` continues the run with: the run's own (its config.yaml:
    its preset, wrappers and every override included), with a larger ``total_steps`` when the
    command line gives one (the run trains for longer). Any other setting the command line
    gives must be the run's own: a different one is refused."""
    run_dir = Path(typed.resume)
    rundir.check_resumable(run_dir, typed.resume)
    saved = config_from_dict(OmegaConf.to_container(OmegaConf.load(run_dir / rundir.CONFIG)))
    now, before = (rundir.flatten(OmegaConf.to_container(OmegaConf.structured(c)))
                   for c in (typed, saved))
    given = [rundir.override_key(o) for o in overrides if not rundir.is_launch_only(o)]
    keys = set(now) if any(k in GLOBAL_GROUPS for k in given) else {
        k for k in now for g in given if k == g or k.startswith(f"{g}.")}
    keys -= {"run_name", *rundir.LAUNCH_KEYS}
    extend = "total_steps" in keys and typed.total_steps > saved.total_steps
    differ = sorted(k for k in keys - ({"total_steps"} if extend else set())
                    if now.get(k) != before.get(k))
    if differ:
        shown = ", ".join(f"{k}={before.get(k)!r} (now {now.get(k)!r})" for k in differ[:4])
        raise RunDirError(f"resume={typed.resume}: the run was started with {shown}; a resumed "
                          "run keeps its own config (give only resume=RUN_DIR, or a larger "
                          "total_steps to train it for longer)")
    return dataclasses.replace(saved, resume=typed.resume,
                               total_steps=typed.total_steps if extend else saved.total_steps)


def end_job(job: Job | None, stop: StopSignals | None) -> float | None:
    """A trained job's result: the mean final eval return of its runs when they all
    completed, else None (a single run exits non-zero, saying how to continue it)."""
    if job is None:
        return None
    ended = [job.results[d] for _, d in job.runs if d in job.results]  # a stop kept some out
    if len(ended) == len(job.runs) and all(m.status == "completed" for m in ended):
        return sum(m.eval_return_mean for m in ended) / len(ended)
    if stop.received is not None and (len(ended) < len(job.runs) or any(
            m.status == "interrupted" for m in ended)):
        if stop.received == signal.SIGUSR2:
            log.info("checkpoint saved; the scheduler requeues the job, which resumes it")
            stop.forward()  # submitit's handler requeues the job and exits
        if job.sweeping:  # the other jobs do not start; the sweep's end says how to resume
            if stop.received != signal.SIGUSR2:  # one job's time limit does not stop the sweep
                request_sweep_stop(job.sweep_dir, stop.received)
            return None
        again = f"resume={job.dir}" if job.cfg.seeds == 1 else \
            " ".join([*job.overrides, f"hydra.run.dir={job.dir}"])
        log.info("continue it with: python -m rlexp.train %s", again)
        sys.exit(exit_status(stop.received))
    if not job.sweeping:
        sys.exit(1)
    return None


def train_job(job: Job, stop: StopSignals) -> dict[Path, RunMetrics]:
    """A job's runs: in this process; those of a several-seed command (not a sweep's job: its
    launcher decides) split over ``processes`` worker processes."""
    count = 1 if job.sweeping else workers.processes_for(job.cfg, job.cfg.processes)
    # Bad input (an env that cannot be made) ends the command here, in one line.
    alone = len(job.todo) > 1 and not build.joins_populations(job.cfg)
    parts = _parts(job.todo, len(job.todo) if alone else count,
                   {d: job.dir / rundir.TRAIN_LOG for _, d in job.todo})
    if count > 1 and len(parts) > 1:
        return workers.train_parts(parts, count, stop, None)
    results: dict[Path, RunMetrics] = {}
    for part in parts:
        if stop.received is not None:
            break
        with recording_failures(part.cfgs, part.run_dirs, job.sweeping) as finished:
            run_population(part.cfgs, part.run_dirs, stop, finished)
        results.update(finished)
    return results


def _parts(runs: list[tuple[Config, Path]], count: int, logs: dict[Path, Path]
           ) -> list[workers.Part]:
    """``runs`` (of one population) in ``count`` parts; ``logs``: each run's job's train.log."""
    return [workers.Part([c for c, _ in part], [d for _, d in part],
                         list(dict.fromkeys(logs[d] for _, d in part)))
            for part in workers.split(runs, count)]


def train_jobs(jobs: list[Job | None], processes: int = 1, log_file: Path | None = None
               ) -> list[float | None]:
    """Train the runs of a sweep's jobs, opened with :func:`open_job`, as populations (those
    that can train as one, :func:`rlexp.populations.population_key`), then end each job
    (:func:`end_job`); returns the jobs' results, in order.

    ``processes``: each population is split into this many parts (-1: one per
    ``device.threads`` cores on a CPU, :func:`rlexp.workers.processes_for`; runs of
    convolutional networks, which cannot train together, one part each), each trained in a
    worker process of its own, that many at once; with 1, in this process, one after another.
    The log lines of each go to its jobs' ``train.log`` too, and all of them to ``log_file``.
    """
    groups: dict[str, list[tuple[Config, Path]]] = {}
    job_logs: dict[Path, Path] = {}  # each run's job's train.log
    for job in jobs:
        for run_cfg, run_dir in job.todo if job else ():
            key = json.dumps(population_key(run_cfg), sort_keys=True, default=str)
            groups.setdefault(key, []).append((run_cfg, run_dir))
            job_logs[run_dir] = job.dir / rundir.TRAIN_LOG
    parts: list[workers.Part] = []
    at_once = 1
    for group in groups.values():
        count = workers.processes_for(group[0][0], processes)
        at_once = max(at_once, count)
        try:
            alone = len(group) > 1 and not build.joins_populations(group[0][0])
        except INPUT_ERRORS:  # its runs fail as they start, each recording why
            alone = False
        parts += _parts(group, len(group) if alone else count, job_logs)
    at_once = min(at_once, len(parts))
    results: dict[Path, RunMetrics] = {}
    with StopSignals() as stop, workers.logging_to([log_file] if log_file else []):
        if at_once > 1:
            results = workers.train_parts(parts, at_once, stop, log_file)
        else:
            for part in parts:
                if stop.received is not None:
                    break
                with workers.logging_to(part.logs), recording_failures(
                        part.cfgs, part.run_dirs, sweeping=True) as finished:
                    run_population(part.cfgs, part.run_dirs, stop, finished)
                results.update(finished)
    values = []
    for job in jobs:
        if job is not None:
            job.results.update({d: results[d] for _, d in job.todo if d in results})
        values.append(end_job(job, stop))
    return values


def _prepare(cfg: Config, run_dir: Path) -> Config | None:
    """What a job does with the run in ``run_dir`` (a sweep's job directory, or a ``seed<N>/``
    directory of a several-seed job): None to keep it as it is (it completed; or it failed or
    diverged and ``retry_failed`` is off), else the config to run, set to resume an unfinished
    run. A run to start from scratch over an earlier attempt's files first moves them aside."""
    state = rundir.status(run_dir)
    failed = state in ("failed", "diverged")
    if state == "completed" or (failed and not cfg.retry_failed):
        log.info("%s: %s before, kept as it is", run_dir, state)
        return None
    if rundir.resumable(run_dir):
        log.info("resuming the unfinished run in %s", run_dir)
        return dataclasses.replace(cfg, resume=str(run_dir))
    if run_dir.is_dir() and (moved := rundir.set_aside(run_dir)) is not None:
        log.info("starting %s again; the earlier attempt's files are in %s", run_dir, moved)
    return dataclasses.replace(cfg, resume=None)
