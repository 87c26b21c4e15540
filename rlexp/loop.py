"""The interaction loop: act -> env.step -> agent.learn -> log / evaluate / checkpoint.

It knows the :class:`~rlexp.agents.base.Agent` interface, never a concrete agent, and does no
torch work of its own: per env step it adds only a few numpy operations to what the env and the
agent cost. Everything it needs to continue after a restart is in :class:`LoopState`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from rlexp.agents import Agent, Transition
from rlexp.envs import snapshot
from rlexp.evaluate import EVAL_SEED_OFFSET, Evaluation, evaluate
from rlexp.logger import Progress, TensorBoardLogger, log
from rlexp.stop import StopSignals


@dataclass
class LoopSettings:
    total_steps: int
    seed: int
    log_every: int
    eval_every: int  # from step 0 on; 0: only at the end
    checkpoint_every: int = 0  # 0: only at the end
    stop_on_return: float | None = None  # end once a greedy evaluation's mean reaches this
    max_abs_q: float | None = None  # diverged when a log interval's mean Q-value exceeds this
    #: The step limit rlexp put on evaluation episodes where the env has none of its own (or a
    #: lower one): episodes it cuts are reported in the log. None: the env's own limit.
    eval_cap: int | None = None
    #: Probability of a random action in evaluations (``eval.epsilon``).
    eval_epsilon: float = 0.0


@dataclass
class LoopState:
    """The loop's counters, saved in every checkpoint (plain values and tensors only)."""

    step: int = 0
    episodes: int = 0
    next_log: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    #: What the agent reported since the last log point: running sums and their count.
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    updates: int = 0
    #: Returns and lengths of the episodes that ended since the last log point.
    ended_returns: list[float] = field(default_factory=list)
    ended_lengths: list[int] = field(default_factory=list)
    #: Wall-clock seconds of training so far, and the part of it spent evaluating.
    wall_seconds: float = 0.0
    eval_seconds: float = 0.0
    stopped_early: bool = False
    #: The envs' state and the current observations, so a resumed run continues its episodes
    #: (None: the envs' state cannot be saved, see rlexp.envs.snapshot; episodes restart).
    env_state: dict | None = None
    obs: torch.Tensor | None = None
    #: Set in the checkpoint of a stopped run that then logged its partial interval at ``step``:
    #: everything logged at ``step`` before that. The resumed run hides the whole step and
    #: writes these again, so its curves are those of a run never stopped.
    logged_before_partial: dict[str, float] | None = None

    @classmethod
    def start(cls, settings: LoopSettings) -> LoopState:
        never = settings.total_steps + 1
        return cls(next_log=settings.log_every, next_eval=0 if settings.eval_every else never,
                   next_checkpoint=settings.checkpoint_every or never)

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> LoopState:
        return cls(**state)

    def extend(self, eval_every: int, checkpoint_every: int) -> None:
        """A completed run, trained for longer: its final evaluation and checkpoint at ``step``
        are done, so the next ones come an interval on; it did not stop early after all."""
        for name, every in (("next_eval", eval_every), ("next_checkpoint", checkpoint_every)):
            while every and getattr(self, name) <= self.step:
                setattr(self, name, getattr(self, name) + every)
        self.stopped_early = False

    @property
    def purge_step(self) -> int:
        """For a run resumed from this state: the first step whose logged points, written by
        the process that stopped, are hidden from TensorBoard."""
        return self.step if self.logged_before_partial is not None else self.step + 1


@dataclass
class LoopResult:
    state: LoopState
    #: The final evaluation (None unless the outcome is "completed").
    evaluation: Evaluation | None
    #: completed, interrupted (a stop signal) or diverged (a non-finite loss or Q-value).
    outcome: str = "completed"
    #: What went wrong, for the other outcomes.
    error: str | None = None


def train(agent: Agent, envs: gym.vector.VectorEnv, eval_envs: gym.vector.VectorEnv,
          settings: LoopSettings, tb: TensorBoardLogger,
          save_checkpoint: Callable[[LoopState], None], state: LoopState | None = None,
          stop: StopSignals | None = None) -> LoopResult:
    """Train until ``total_steps`` (or ``stop_on_return``); a given ``state`` resumes a run.

    Training also ends when ``stop`` receives a signal (outcome "interrupted"): after the
    current env step, between the gradient steps of an update, or after the current step of an
    evaluation's episodes; what was cut short is finished when the run resumes, so its curves
    are those of a run never stopped. It ends too when the agent reports a non-finite loss or
    Q-value ("diverged"). The checkpoint is then saved (after a divergence, the last good one is
    kept), and the partial log interval is written. A resumed run continues the episodes in
    progress at its checkpoint when their state could be saved, and otherwise starts new ones
    (its envs reset with a seed derived from the step).
    """
    n = envs.num_envs
    state = state or LoopState.start(settings)
    if state.logged_before_partial is not None:  # hidden with the partial point: write again
        for tag, value in state.logged_before_partial.items():
            tb.scalar(tag, value, state.step)
        state.logged_before_partial = None
    started = time.perf_counter() - state.wall_seconds
    progress = Progress(settings.total_steps, start_step=state.step)
    last_log = [state.step, time.perf_counter()]  # step and time of the last log point
    final: Evaluation | None = None
    eval_step = -1
    stopping = (lambda: stop.received is not None) if stop is not None else None
    # The agent's metric that train.max_abs_q bounds (the agent contract's value_metric).
    checked = agent.value_metric if settings.max_abs_q is not None else None

    def scheduled_eval(step: int) -> str | None:
        """Run the evaluation due at ``step``, if one is; returns "interrupted" or "solved" when
        training must end, else None."""
        nonlocal final, eval_step
        if not state.next_eval <= step < settings.total_steps:  # the final one: after the loop
            return None
        result = run_eval(step)
        if result is None:
            return "interrupted"
        final, eval_step = result, step
        state.next_eval += settings.eval_every
        target = settings.stop_on_return
        if target is not None and result.returns.mean() >= target:
            log.info("stopping at step %d: greedy eval return %.2f >= %g "
                     "(train.stop_on_return)", step, result.returns.mean(), target)
            state.stopped_early = True
            return "solved"
        return None

    def run_eval(step: int) -> Evaluation | None:
        t = time.perf_counter()
        result = evaluate(agent, eval_envs, settings.seed + EVAL_SEED_OFFSET, stopping,
                          settings.eval_epsilon)
        state.eval_seconds += time.perf_counter() - t
        if result is None:
            return None
        tb.scalar("eval/return_mean", float(result.returns.mean()), step)
        tb.scalar("eval/return_std", float(result.returns.std()), step)
        tb.scalar("eval/truncated", float(result.truncated.mean()), step)
        if settings.eval_cap is not None and result.truncated.any():
            log.warning("evaluation at step %d: %d of %d episodes reached "
                        "eval.max_episode_steps=%d and were cut (counted as truncated)", step,
                        result.truncated.sum(), len(result.truncated), settings.eval_cap)
        return result

    def record(metrics: dict[str, torch.Tensor] | None) -> str | None:
        """Add an update's metrics to the interval's sums; the error if one is not finite."""
        if metrics is None:
            return None
        if checked is not None and checked not in metrics:  # else divergence goes unseen
            raise ValueError(f"{type(agent).__name__}.learn reports no {checked!r} (its "
                             "value_metric), which train.max_abs_q bounds: report it, or set "
                             "value_metric = None")
        # One sync per update: a NaN or inf in any metric makes the sum non-finite.
        if not math.isfinite(float(sum(metrics.values()))):
            bad = next(k for k, v in metrics.items() if not torch.isfinite(v).all())
            return f"train/{bad} is {float(metrics[bad])} at step {state.step}"
        for key, value in metrics.items():
            state.sums[key] = state.sums[key] + value if key in state.sums else value
        state.updates += 1
        return None

    def post_step(step: int) -> str | None:
        """What follows an env step and its update: the log point, evaluation and checkpoint
        due at ``step``. Each is done once (the counters say so), so a resumed run can call it
        for the step it stopped at. Returns the outcome when training must end."""
        nonlocal error
        if step >= state.next_log:
            means = _log_point(state, agent, tb, last_log)
            state.next_log += settings.log_every
            if checked is not None and abs(value := means.get(checked, 0.0)) > settings.max_abs_q:
                error = (f"train/{checked} is {value:.3g} at step {step}, beyond "
                         f"train.max_abs_q={settings.max_abs_q:g}")
                return "diverged"
        ended = scheduled_eval(step)
        if ended is None and step >= state.next_checkpoint and step < settings.total_steps:
            state.next_checkpoint += settings.checkpoint_every  # the final one: after the loop
            checkpoint(obs)
        return ended

    def checkpoint(obs: np.ndarray) -> None:
        state.wall_seconds = time.perf_counter() - started
        state.env_state = snapshot.capture(envs)
        state.obs = torch.from_numpy(obs.copy())
        save_checkpoint(state)

    if state.env_state is not None and snapshot.restore(envs, state.env_state):
        obs = state.obs.numpy().copy()
    else:
        if state.step:
            log.info("the envs' state was not saved or does not fit them: resuming with new "
                     "episodes")
        obs = envs.reset(seed=settings.seed + state.step)[0].copy()

    outcome, error = "completed", None
    try:
        # Resumed: first what a stop cut short at the checkpoint's step (the rest of an update,
        # a log point, an evaluation); all of it is done already after any other checkpoint.
        ended = None
        if state.step:
            error = record(agent.finish_pending())
            ended = "diverged" if error else post_step(state.step)
        else:  # the untrained agent: where every curve starts
            ended = scheduled_eval(0)
        while ended is None and state.step < settings.total_steps:
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, info = envs.step(action)
            state.step += n
            last_return = None
            real_next_obs = next_obs
            if "final_obs" in info:  # some sub-env's episode ended and it was reset
                real_next_obs = next_obs.copy()
                for i in np.flatnonzero(info["_final_obs"]):
                    real_next_obs[i] = info["final_obs"][i]
                stats = info["final_info"]
                # Not every end is a finished episode: an Atari life lost ends the learner's
                # episode, while "episode" reports whole games.
                for i in np.flatnonzero(stats.get("_episode", ())):
                    last_return = float(stats["episode"]["r"][i])
                    state.ended_returns.append(last_return)
                    state.ended_lengths.append(int(stats["episode"]["l"][i]))
                    state.episodes += 1
            metrics = agent.learn(Transition(obs, action, reward, real_next_obs, terminated,
                                             truncated), stopping)
            obs = next_obs.copy()  # the env's buffer: the next step overwrites it
            error = record(metrics)
            if error:
                ended = "diverged"
                break
            progress.update(state.step, last_return)
            if stop is not None and stop.received:  # post_step(step) runs after the resume
                ended = "interrupted"
                break
            ended = post_step(state.step)
            if ended is None and stop is not None and stop.received:
                ended = "interrupted"
        if ended in ("interrupted", "diverged"):
            outcome = ended
            if ended == "interrupted":
                error = f"interrupted by {stop.name} at step {state.step}"
        else:
            if _pending(state):  # the last, partial interval, logged before the final eval
                _log_point(state, agent, tb, last_log)
            if eval_step != state.step:  # unless one just ran here
                final = run_eval(state.step)
                if final is None:
                    outcome = "interrupted"
                    error = f"interrupted by {stop.name} in the final evaluation"
    finally:
        progress.close()
    if outcome == "diverged":  # the last good checkpoint stays as it is
        state.wall_seconds = time.perf_counter() - started
    elif outcome == "interrupted" and _pending(state):
        # The checkpoint keeps the interval's sums, so a resumed run logs the point a run never
        # stopped would; this run's curves still end where it stopped (the partial point).
        state.logged_before_partial = (dict(tb.latest_points) if tb.latest_step == state.step
                                       else {})
        checkpoint(obs)
        state.logged_before_partial = None
    else:
        checkpoint(obs)
    if outcome != "completed" and _pending(state):
        _log_point(state, agent, tb, last_log)
    return LoopResult(state=state, evaluation=final if outcome == "completed" else None,
                      outcome=outcome, error=error)


def _pending(state: LoopState) -> bool:
    """Whether anything was reported since the last log point."""
    return bool(state.updates or state.ended_returns)


def _log_point(state: LoopState, agent: Agent, tb: TensorBoardLogger, last: list
               ) -> dict[str, float]:
    """Write the train/ and time/ scalars at the current step; returns the agent's metrics
    averaged since the last point. ``last``: the step and time of the last point (updated)."""
    step, now = state.step, time.perf_counter()
    means = {key: float(total) / state.updates for key, total in state.sums.items()}
    for key, mean in means.items():
        tb.scalar(f"train/{key}", mean, step)
    state.sums, state.updates = {}, 0
    if state.ended_returns:
        tb.scalar("train/episode_return", float(np.mean(state.ended_returns)), step)
        tb.scalar("train/episode_length", float(np.mean(state.ended_lengths)), step)
        state.ended_returns, state.ended_lengths = [], []
    for key, value in agent.log_scalars().items():
        tb.scalar(f"train/{key}", value, step)
    tb.scalar("time/sps", (step - last[0]) / max(now - last[1], 1e-9), step)
    last[:] = [step, now]
    return means
