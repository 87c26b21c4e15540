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

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlexp import build, checkpoint, rundir, workers
from rlexp.checkpoint import CheckpointError
from rlexp.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    check_population,
    config_from_dict,
    population_key,
    resumes_latest,
    validate,
)
from rlexp.logger import TensorBoardLogger, flatten, traceback_to_log_files
from rlexp.loop import LoopResult, LoopSettings, LoopState, MemberRun, train
from rlexp.metrics import RunMetrics, read_run_metrics, write_metrics
from rlexp.rundir import RunDirError
from rlexp.rundir import WriteError as RunDirWriteError
from rlexp.shutdown import skip_exit_collection
from rlexp.stop import (
    StopNow,
    StopSignals,
    SweepSignals,
    exit_status,
    request_sweep_stop,
    sweep_stop_requested,
)

log = logging.getLogger("rlexp")


def run(cfg: Config, run_dir: Path, stop: StopSignals | None = None) -> RunMetrics:
    """Train one run described by a validated config, writing everything into ``run_dir``.

    Returns the run's metrics, also written to ``metrics.json``: a run stopped by a signal in
    ``stop`` has status ``interrupted`` and one whose loss diverged ``diverged``. Any exception
    propagates (the caller records the run as failed).
    """
    return run_population([cfg], [run_dir], stop)[0]


@dataclass
class _Start:
    """A run about to train: its config and directory, and where it resumes from."""

    cfg: Config
    run_dir: Path
    #: The resolved config, as config.yaml holds it and flattened (for TensorBoard's HParams).
    yaml_text: str
    flat_config: dict
    #: The checkpoint it resumes from (None: a new run), and where and how it resumes.
    resumed: dict | None = None
    point: rundir.ResumePoint | None = None

    @property
    def step(self) -> int:
        return 0 if self.resumed is None else int(self.resumed["loop"]["step"])


def run_population(cfgs: list[Config], run_dirs: list[Path], stop: StopSignals | None = None,
                   finished: dict[Path, RunMetrics] | None = None) -> list[RunMetrics]:
    """Train runs whose configs differ only in what members of a population may differ in
    (:func:`rlexp.config.check_population`) as populations, one process, each run writing its
    ``run_dirs`` entry as it would alone. Runs that resume from different steps train as
    separate populations, one after another; a stop signal ends them all.

    Returns the runs' metrics (also in each ``metrics.json``), in order; runs not reached
    after a stop signal have none (the list is shorter). Any exception propagates (the caller
    records the unfinished runs as failed); ``finished`` gets each run's metrics as it ends.
    """
    check_population(cfgs)
    starts = []
    for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
        resolved = OmegaConf.structured(cfg)
        flat_config = flatten(OmegaConf.to_container(resolved))
        point = rundir.checkpoint_to_resume(run_dir, cfg.resume, flat_config)
        last = None if point is None else point.checkpoint
        resumed = None if last is None else checkpoint.load_training_state(last)
        starts.append(_Start(cfg, run_dir, OmegaConf.to_yaml(resolved), flat_config, resumed,
                             point))
    results: dict[int, RunMetrics] = {}
    for step in sorted({s.step for s in starts}):
        if stop is not None and stop.received is not None:
            break
        group = [i for i, s in enumerate(starts) if s.step == step]
        for i, metrics in zip(group, _train_together([starts[i] for i in group], stop,
                                                     {} if finished is None else finished),
                              strict=True):
            results[i] = metrics
    return [results[i] for i in sorted(results)]


def _train_together(starts: list[_Start], stop: StopSignals | None,
                    finished: dict[Path, RunMetrics]) -> list[RunMetrics]:
    """Train runs that start from the same step as one population."""
    cfg = starts[0].cfg
    for s in starts:
        extended_from = None if s.point is None else s.point.extended_from
        if extended_from is not None:  # resumed with a larger total_steps
            log.warning("training %s for longer: total_steps %d -> %d; schedules tied to "
                        "total_steps (epsilon, the learning-rate decay, prioritized replay's "
                        "beta) follow the new total from step %d on", s.run_dir, extended_from,
                        s.cfg.total_steps, s.step)
    if cfg.total_steps % cfg.env.num_envs:  # the envs step together to the end
        log.warning("total_steps=%d is not a multiple of env.num_envs=%d: the run takes %d env "
                    "steps", cfg.total_steps, cfg.env.num_envs,
                    -(-cfg.total_steps // cfg.env.num_envs) * cfg.env.num_envs)
    device = build.resolve_device(cfg.device)
    build.seed_everything(cfg.seed)
    size = len(starts)
    envs = build.make_vector_env(cfg.env, cfg.env.num_envs * size)
    env_limit = build.time_limit(envs)
    if env_limit is None:
        log.info("%s has no time limit: training episodes last until the env ends them (set "
                 "env.max_steps to cut them)", cfg.env.id)
    eval_envs, eval_cap = build.make_eval_envs(cfg.env, cfg.eval, env_limit, size)
    agent = build.make_agent([s.cfg for s in starts], envs.single_observation_space,
                             envs.single_action_space, device)
    loop_states = [None] * size
    if starts[0].resumed is not None:
        try:
            agent.load_state_dicts([s.resumed["agent"] for s in starts])
        except (KeyError, RuntimeError, ValueError) as e:  # e.g. other network shapes
            where = ", ".join(str(s.point.checkpoint) for s in starts)
            raise CheckpointError(f"{where} does not fit this config's "
                                  f"agent: {_first_line(str(e))}") from e
        checkpoint.restore_rng(starts[0].resumed)
        loop_states = [LoopState.from_state_dict(s.resumed["loop"]) for s in starts]
        for s, state in zip(starts, loop_states, strict=True):
            if s.point.completed:  # trained for longer: its final evaluation is done
                state.extend(s.cfg.eval.interval(s.cfg.total_steps),
                             s.cfg.checkpoint.every_steps)
    loggers = []
    for s, state in zip(starts, loop_states, strict=True):
        # Written before training: an unwritable or full output dir fails here, not at the end.
        rundir.atomic_write(s.run_dir / rundir.CONFIG,
                            lambda tmp, t=s.yaml_text: tmp.write_text(t))
        # A resumed run hides the points its previous process logged after the checkpoint.
        tb = TensorBoardLogger(s.run_dir, purge_step=state.purge_step if state else None)
        if state is None:  # a resumed run has its config and hparams logged already
            tb.config(s.yaml_text, s.flat_config)
        loggers.append(tb)
        begin = f"resuming at step {state.step}" if state else "starting"
        log.info("run %s: %s on %s, %d env steps, device %s, %s -> %s", s.cfg.run_name,
                 s.cfg.agent.name, s.cfg.env.id, s.cfg.total_steps, device, begin, s.run_dir)
    if size > 1:
        log.info("training %d runs as one population", size)
    results: list[RunMetrics | None] = [None] * size

    def member_run(i: int) -> MemberRun:
        s, tb = starts[i], loggers[i]

        def save_last(state: LoopState) -> None:
            # The curves up to the checkpoint go to disk first: a run killed after it (SIGKILL)
            # and resumed from it hides only points from after it, so none may be still
            # buffered.
            tb.flush()
            checkpoint.save_checkpoint(s.run_dir / rundir.LAST, checkpoint.training_state(
                agent.state_dict(i), state.state_dict(), include_replay=s.cfg.checkpoint.replay))

        def finish(result: LoopResult) -> None:
            tb.close()
            results[i] = finished[s.run_dir] = _finish(s, agent.state_dict(i), result, device,
                                                       size)

        settings = LoopSettings(
            total_steps=s.cfg.total_steps, seed=s.cfg.seed, log_every=s.cfg.log.every_steps,
            eval_every=s.cfg.eval.interval(s.cfg.total_steps),
            checkpoint_every=s.cfg.checkpoint.every_steps,
            stop_on_return=s.cfg.train.stop_on_return, max_abs_q=s.cfg.train.max_abs_q,
            eval_cap=eval_cap, eval_epsilon=s.cfg.eval.epsilon)
        return MemberRun(settings, tb, save_last, finish, loop_states[i])

    try:
        train(agent, envs, eval_envs, [member_run(i) for i in range(size)], stop)
    finally:
        for tb in loggers:
            tb.close()
        envs.close()
        eval_envs.close()
    return results


def _finish(s: _Start, agent_state: dict, result: LoopResult, device: torch.device,
            population: int) -> RunMetrics:
    """A run's end: its final checkpoint (when it completed) and metrics.json."""
    cfg, run_dir = s.cfg, s.run_dir
    state, final = result.state, result.evaluation
    returns = None if final is None else final.returns
    if result.outcome == "completed":
        checkpoint.save_checkpoint(run_dir / rundir.FINAL, checkpoint.training_state(
            agent_state, state.state_dict(), include_replay=False))
    error = result.error
    if result.outcome == "diverged":
        kept = (f"{rundir.LAST} is the last good checkpoint"
                if (run_dir / rundir.LAST).exists() else "no checkpoint had been written")
        error += f"; likely cause: {_divergence_hint(cfg)}; {kept}"
    metrics = RunMetrics(
        status=result.outcome,
        error=error,
        eval_return_mean=None if returns is None else float(returns.mean()),
        eval_return_std=None if returns is None else float(returns.std()),
        eval_episodes=None if returns is None else len(returns),
        eval_truncated=None if final is None else int(final.truncated.sum()),
        env_steps=state.step,
        episodes=state.episodes,
        stopped_early=state.stopped_early,
        resumed_from_step=None if s.resumed is None else s.step,
        extended_from_steps=None if s.point is None else s.point.extended_from,
        wall_seconds=round(state.wall_seconds, 3),
        eval_seconds=round(state.eval_seconds, 3),
        sps=round(state.step / max(state.wall_seconds, 1e-9), 1),
        seed=cfg.seed,
        device=str(device),
        torch_threads=torch.get_num_threads(),
        population=population,
    )
    write_metrics(run_dir, metrics)
    if metrics.status == "completed":
        log.info("done %s seed %d | eval return %.2f +- %.2f (%d episodes) | %d steps in %.1fs "
                 "(%.0f steps/s) | %s", cfg.run_name, cfg.seed, metrics.eval_return_mean,
                 metrics.eval_return_std, metrics.eval_episodes, metrics.env_steps,
                 metrics.wall_seconds, metrics.sps, run_dir)
    return metrics


def _divergence_hint(cfg: Config) -> str:
    hint = f"optimizer.lr={cfg.optimizer.lr:g} is too high for this problem (try 10x lower)"
    if cfg.agent.max_grad_norm is None:
        hint += " or gradients are unclipped (set agent.max_grad_norm)"
    return hint


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
                job.results.update(_train_job(job, stop))
    except INPUT_ERRORS as e:  # outside a sweep: found as training began (e.g. a checkpoint)
        rundir.discard_if_unused(job.dir)
        _exit_with_one_line(e)  # raising would make Hydra print a second line
    finally:
        rundir.unlock(Path(HydraConfig.get().runtime.output_dir))
    return end_job(job, stop)


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
        if sweeping and typed.resume is not None and not resumes_latest(typed.resume):
            raise ConfigError(f"resume={typed.resume}: a sweep resumes with resume=true and "
                              "its hydra.sweep.dir, not a run directory")
        if not sweeping and typed.resume is not None and not resumes_latest(typed.resume):
            typed = resumed_config(typed, list(hydra_cfg.overrides.task))
        if typed.seeds == 1:
            runs = [(typed, job_dir)]
        else:  # seed, seed + 1, ... each in a directory of its own, trained as a population
            runs = [(dataclasses.replace(typed, seed=seed, seeds=1), job_dir / f"seed{seed}")
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
    except INPUT_ERRORS as e:  # refused before training; in a sweep, run_recorded saw it
        if sweeping:  # the job's directory stays, saying why it failed
            record_failure(job_dir, describe_error(e), cfg.get("seed"))
            log.error("run failed: %s", describe_error(e))
            return None
        rundir.discard_if_unused(job_dir)
        _exit_with_one_line(e)  # raising would make Hydra print a second line


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
    now, before = (flatten(OmegaConf.to_container(OmegaConf.structured(c)))
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


def _train_job(job: Job, stop: StopSignals) -> dict[Path, RunMetrics]:
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
        results.update(run_recorded(part.cfgs, part.run_dirs, stop, job.sweeping))
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
    that can train as one, :func:`rlexp.config.population_key`), then end each job
    (:func:`end_job`); returns the jobs' results, in order.

    ``processes``: each population is split into this many parts (-1: one per core on a CPU;
    :func:`rlexp.workers.processes_for`; runs of convolutional networks, which cannot train
    together, one part each), each trained in a worker process of its own, that many at once;
    with 1, in this process, one after another. The log lines of each go to its
    jobs' ``train.log`` too, and all of them to ``log_file``.
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
                with workers.logging_to(part.logs):
                    results.update(run_recorded(part.cfgs, part.run_dirs, stop,
                                                sweeping=True))
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


def run_recorded(cfgs: list[Config], run_dirs: list[Path], stop: StopSignals, sweeping: bool
                  ) -> dict[Path, RunMetrics]:
    """:func:`run_population`, with an exception recorded as the failure of the runs it cut
    short (metrics.json and train.log). Outside a sweep, input errors propagate, to be reported
    in one line."""
    finished: dict[Path, RunMetrics] = {}
    try:
        run_population(cfgs, run_dirs, stop, finished)
    except StopNow as e:  # no checkpoint now: say which one is left, then stop
        messages = []
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            if run_dir not in finished:
                last = rundir.LAST if (run_dir / rundir.LAST).is_file() else None
                messages.append(f"{e}; " + (f"{last} is the last checkpoint" if last else
                                            "no checkpoint"))
                write_metrics(run_dir, RunMetrics(status="interrupted", error=messages[-1],
                                                  seed=cfg.seed))
        raise StopNow(e.signum, messages[0] if len(messages) == 1 else str(e)) from None
    except Exception as e:
        if isinstance(e, INPUT_ERRORS) and not sweeping:
            raise
        if isinstance(e, INPUT_ERRORS):
            message = describe_error(e)
            log.error("run failed: %s", message)
        elif isinstance(e, RunDirWriteError):  # the disk, not the run: no traceback shown
            message = str(e)
            log.error("run failed: %s", message)
            traceback_to_log_files(e)
        else:
            message = f"{type(e).__name__}: {_first_line(str(e))}"
            log.exception("run failed: %s", message)  # the traceback, into train.log too
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            if run_dir not in finished:
                record_failure(run_dir, message, cfg.seed)
                finished[run_dir] = RunMetrics(status="failed", error=message, seed=cfg.seed)
    for metrics in finished.values():
        if metrics.status not in ("completed", "failed"):
            log.error("run %s: %s", metrics.status, metrics.error)
    return finished


def record_failure(run_dir: Path, message: str, seed: int | None) -> None:
    """metrics.json with status failed (kept beside the traceback in train.log), unless the run
    dir is gone or already records a completed run."""
    if not run_dir.is_dir() or rundir.status(run_dir) == "completed":
        return
    try:
        write_metrics(run_dir, RunMetrics(status="failed", error=message, seed=seed))
    except OSError as e:  # e.g. the disk that made the run fail is still full: said already
        traceback_to_log_files(e)


#: Hydra plugin configs rlexp's presets use, and the extra that installs each plugin.
PLUGIN_EXTRAS = {
    "hydra/launcher/joblib": "launchers",
    "hydra/launcher/submitit_local": "launchers",
    "hydra/launcher/submitit_slurm": "launchers",
    "hydra/sweeper/optuna": "search",
}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def describe_error(e: BaseException) -> str:
    """One line for a config or input error: the bad key or value, and what is allowed."""
    cause = e
    while cause is not None:  # e.g. our own error, raised in a resolver while Hydra composed
        if isinstance(cause, ConfigError | CheckpointError | RunDirError):
            return _first_line(str(cause))
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, OverrideParseException):
        return (f"cannot parse the override {e.override!r}: write key=value, and quote a value "
                "with spaces or special characters (key='a b'); keys are ASCII names")
    if isinstance(e, MissingConfigException) and e.missing_cfg_file in PLUGIN_EXTRAS and \
            e.options is None:  # a preset (e.g. hydra/launcher=parallel) needs the plugin
        group, _, option = e.missing_cfg_file.rpartition("/")
        return (f"{group}={option} is not installed: it comes with a Hydra plugin: "
                f"pip install -e '.[{PLUGIN_EXTRAS[e.missing_cfg_file]}]'")
    if isinstance(e, MissingConfigException) and e.options is not None:
        # e.g. agent=foo: missing_cfg_file is "agent/foo", options are the group's configs
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        message = f"{group}={option} is not an option of {group}; choose one of: " + ", ".join(
            sorted(e.options))
        if f"{group}/{option}" in PLUGIN_EXTRAS:
            message += (f" ({option} comes with a Hydra plugin: pip install -e "
                        f"'.[{PLUGIN_EXTRAS[f'{group}/{option}']}]')")
        return message
    # Hydra's composition errors carry the useful part (key, expected type) in their cause.
    composing = isinstance(e, HydraException) and isinstance(e.__cause__, OmegaConfBaseException)
    cause = e.__cause__ if composing else e
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and dataclasses.is_dataclass(
            cause.object_type):
        allowed = ", ".join(f.name for f in dataclasses.fields(cause.object_type))
        return f"unknown key {cause.full_key!r}; allowed here: {allowed}"
    if cause is not e:  # e.g. "Error merging override x=y" caused by a type error
        return f"{_first_line(str(e))}: {_first_line(str(cause))}"
    if str(e).startswith("Ambiguous value for argument"):  # seed=0,1 without -m: Hydra's hints
        return (f"{_first_line(str(e))}: to sweep over it, add --multirun (-m); for a list, "
                "key=[a,b]; for a string, quote it: key='a,b'")
    return _first_line(str(e))


#: Errors that mean "bad input": reported as one line, exit status 2, no traceback.
INPUT_ERRORS = (ConfigError, CheckpointError, RunDirError, HydraException,
                OmegaConfBaseException)
_SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"


def _exit_with_one_line(e: BaseException) -> None:
    if _SHOW_TRACEBACK:
        raise e
    print(f"rlexp: error: {describe_error(e)}", file=sys.stderr)
    sys.exit(2)


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
        from rlexp.help import help_text

        print(help_text())
        return
    sweeping = any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in args)
    if sweeping and any(a.lower() == "resume=true" for a in args) and not any(
            a.startswith("hydra.sweep.dir=") for a in args):
        print("rlexp: error: resume=true in a sweep continues an earlier sweep: name its "
              "directory with hydra.sweep.dir=outputs/multirun/DATE/TIME", file=sys.stderr)
        sys.exit(2)
    try:
        local_submitit = any(a in ("hydra/launcher=local_cluster",
                                   "hydra/launcher=submitit_local") for a in args)
        with SweepSignals(local_submitit) if sweeping else contextlib.nullcontext():
            _hydra_main()
    except StopNow as e:
        print(f"rlexp: {e}", file=sys.stderr)
        sys.exit(exit_status(e.signum))
    except INPUT_ERRORS as e:
        _exit_with_one_line(e)
    except OSError as e:  # Hydra could not create the run or sweep directory; a full disk
        if _SHOW_TRACEBACK:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"rlexp: error: {e}" if isinstance(e, RunDirWriteError) else
              f"rlexp: error: cannot write the output directory{where}: {e.strerror or e}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    skip_exit_collection()
    main()
