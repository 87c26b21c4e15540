"""Run a population of runs in this process: build its envs, agent and loggers, train it
with :func:`rlexp.loop.train`, write each run's final checkpoint and ``metrics.json``, and record
a failure where a run cannot finish. No Hydra here: a validated :class:`rlexp.config.Config`
and a directory are all a run needs (``run(cfg, run_dir)`` from Python)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from rlexp import build, checkpoint, rundir, runtime
from rlexp.agents import agent_class
from rlexp.checkpoint import CheckpointError
from rlexp.config import Config, dumped
from rlexp.errors import INPUT_ERRORS, describe_error, first_line
from rlexp.logger import TensorBoardLogger, traceback_to_log_files
from rlexp.loop import LoopResult, LoopSettings, LoopState, MemberRun, train
from rlexp.metrics import RunMetrics, write_metrics
from rlexp.populations import check_population
from rlexp.rundir import WriteError
from rlexp.stop import StopNow, StopSignals
from rlexp.trackers import open_trackers

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
    (:func:`rlexp.populations.check_population`) as populations, one process, each run writing its
    ``run_dirs`` entry as it would alone. Runs that resume from different steps train as
    separate populations, one after another; a stop signal ends them all.

    Returns the runs' metrics (also in each ``metrics.json``), in order; runs not reached
    after a stop signal have none (the list is shorter). Any exception propagates (the caller
    records the unfinished runs as failed); ``finished`` gets each run's metrics as it ends.
    """
    check_population(cfgs)
    starts = []
    for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
        yaml_text, flat_config = dumped(cfg)
        point = rundir.checkpoint_to_resume(run_dir, cfg.resume, flat_config)
        last = None if point is None else point.checkpoint
        resumed = None if last is None else checkpoint.load_training_state(last)
        starts.append(_Start(cfg, run_dir, yaml_text, flat_config, resumed, point))
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
    _warn_about_steps(starts)
    device = runtime.resolve_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    size = len(starts)
    envs = build.make_vector_env(cfg.env, cfg.env.num_envs * size)
    env_limit = build.time_limit(envs)
    if env_limit is None:
        log.info("%s has no time limit: training episodes last until the env ends them (set "
                 "env.max_steps to cut them)", cfg.env.id)
    eval_envs, eval_cap = build.make_eval_envs(cfg.env, cfg.eval, env_limit, size)
    agent = build.make_agent([s.cfg for s in starts], envs.single_observation_space,
                             envs.single_action_space, device)
    loop_states = _resume(agent, starts) if starts[0].resumed is not None else [None] * size
    loggers = [_open_log(s, state, device) for s, state in zip(starts, loop_states, strict=True)]
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
            tb.commit(state.purge_step)

        def finish(result: LoopResult) -> None:
            results[i] = finished[s.run_dir] = _finish(s, agent.state_dict(i), result, device,
                                                       size)
            tb.end_trackers(result.outcome, results[i].summary(),
                            resumable=result.outcome == "interrupted")
            tb.close()

        settings = LoopSettings(
            total_steps=s.cfg.total_steps, seed=s.cfg.seed, log_every=s.cfg.log.every_steps,
            eval_every=s.cfg.eval.interval(s.cfg.total_steps),
            checkpoint_every=s.cfg.checkpoint.every_steps,
            stop_on_return=s.cfg.train.stop_on_return, max_abs_q=s.cfg.train.max_abs_q,
            eval_cap=eval_cap, eval_epsilon=s.cfg.eval.epsilon)
        return MemberRun(settings, tb, save_last, finish, loop_states[i])

    try:
        train(agent, envs, eval_envs, [member_run(i) for i in range(size)], stop)
    except BaseException as e:  # the trackers of the runs it cut short end too
        for tb in loggers:
            tb.end_trackers("interrupted" if isinstance(e, StopNow) else "failed",
                            resumable=isinstance(e, StopNow | KeyboardInterrupt))
        raise
    finally:
        for tb in loggers:
            tb.close()
        envs.close()
        eval_envs.close()
    return results


def _warn_about_steps(starts: list[_Start]) -> None:
    """Warn where the steps taken differ from what a user may expect: a run trained for
    longer, a budget that is not a whole number of vector steps."""
    for s in starts:
        extended_from = None if s.point is None else s.point.extended_from
        if extended_from is not None:  # resumed with a larger total_steps
            log.warning("training %s for longer: total_steps %d -> %d; schedules tied to "
                        "total_steps (epsilon, the learning-rate decay, prioritized replay's "
                        "beta) follow the new total from step %d on", s.run_dir, extended_from,
                        s.cfg.total_steps, s.step)
    cfg = starts[0].cfg
    if cfg.total_steps % cfg.env.num_envs:  # the envs step together to the end
        log.warning("total_steps=%d is not a multiple of env.num_envs=%d: the run takes %d env "
                    "steps", cfg.total_steps, cfg.env.num_envs,
                    -(-cfg.total_steps // cfg.env.num_envs) * cfg.env.num_envs)


def _resume(agent, starts: list[_Start]) -> list[LoopState]:
    """Load the checkpoints of runs that resume into ``agent`` and the random generators;
    returns their loop states."""
    try:
        agent.load_state_dicts([s.resumed["agent"] for s in starts])
    except (KeyError, RuntimeError, ValueError) as e:  # e.g. other network shapes
        where = ", ".join(str(s.point.checkpoint) for s in starts)
        raise CheckpointError(f"{where} does not fit this config's "
                              f"agent: {first_line(str(e))}") from e
    checkpoint.restore_rng(starts[0].resumed)
    loop_states = [LoopState.from_state_dict(s.resumed["loop"]) for s in starts]
    for s, state in zip(starts, loop_states, strict=True):
        if s.point.completed:  # trained for longer: its final evaluation is done
            state.extend(s.cfg.eval.interval(s.cfg.total_steps), s.cfg.checkpoint.every_steps)
    return loop_states


def _open_log(s: _Start, state: LoopState | None, device: torch.device) -> TensorBoardLogger:
    """A run's config.yaml and TensorBoard log, and its first log line."""
    # Written before training: an unwritable or full output dir fails here, not at the end.
    rundir.atomic_write(s.run_dir / rundir.CONFIG, lambda tmp: tmp.write_text(s.yaml_text))
    # A resumed run hides the points its previous process logged after the checkpoint.
    tb = TensorBoardLogger(s.run_dir, purge_step=state.purge_step if state else None,
                           trackers=open_trackers(s.cfg.logger, s.run_dir, s.flat_config,
                                                  s.yaml_text, s.cfg.run_name))
    if state is None:  # a resumed run has its config and hparams logged already
        tb.config(s.yaml_text, s.flat_config)
    begin = f"resuming at step {state.step}" if state else "starting"
    log.info("run %s: %s on %s, %d env steps, device %s, %s -> %s", s.cfg.run_name,
             s.cfg.agent.name, s.cfg.env.id, s.cfg.total_steps, device, begin, s.run_dir)
    return tb


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
    hints = [f"optimizer.lr={cfg.optimizer.lr:g} is too high for this problem (try 10x lower)",
             *agent_class(cfg.agent).divergence_hints(cfg.agent)]
    return " or ".join(hints)


@contextlib.contextmanager
def recording_failures(cfgs: list[Config], run_dirs: list[Path], sweeping: bool
                       ) -> Iterator[dict[Path, RunMetrics]]:
    """Around :func:`run_population` (given the dict this yields as its ``finished``): an
    exception is recorded as the failure of the runs it cut short (metrics.json and
    train.log), and the dict then holds every run's metrics. Outside a sweep, input errors
    propagate, to be reported in one line; a stop that came where no checkpoint could be
    written propagates, saying which checkpoint is left."""
    finished: dict[Path, RunMetrics] = {}
    try:
        yield finished
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
        elif isinstance(e, WriteError):  # the disk, not the run: no traceback shown
            message = str(e)
            log.error("run failed: %s", message)
            traceback_to_log_files(e)
        else:
            message = f"{type(e).__name__}: {first_line(str(e))}"
            log.exception("run failed: %s", message)  # the traceback, into train.log too
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            if run_dir not in finished:
                record_failure(run_dir, message, cfg.seed)
                finished[run_dir] = RunMetrics(status="failed", error=message, seed=cfg.seed)
    for metrics in finished.values():
        if metrics.status not in ("completed", "failed"):
            log.error("run %s: %s", metrics.status, metrics.error)


def record_failure(run_dir: Path, message: str, seed: int | None) -> None:
    """metrics.json with status failed (kept beside the traceback in train.log), unless the run
    dir is gone or already records a completed run."""
    if not run_dir.is_dir() or rundir.status(run_dir) == "completed":
        return
    try:
        write_metrics(run_dir, RunMetrics(status="failed", error=message, seed=seed))
    except OSError as e:  # e.g. the disk that made the run fail is still full: said already
        traceback_to_log_files(e)
