"""The interaction loop: act -> env.step -> agent.learn -> log / evaluate / checkpoint.

It trains a population (a single run is a population of one): every member has its own envs
(consecutive sub-envs of one vector env, stepped together), its own run (settings, TensorBoard
log, checkpoints, :class:`LoopState`) and ends on its own (solved, diverged) while the others go
on; a stop signal ends them all. It knows the :class:`~rlexp.agents.base.Agent` interface, never
a concrete agent, and does no torch work of its own: per env step it adds only a few numpy
operations to what the env and the agent cost. Everything a member needs to continue after a
restart is in its :class:`LoopState`.
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
from gymnasium.vector import SyncVectorEnv

from rlexp.agents import Agent, Transition
from rlexp.envs import snapshot
from rlexp.evaluator import EVAL_SEED_OFFSET, Evaluation, evaluate
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
        """The fields as they are, not copied (``dataclasses.asdict`` deep-copies the envs'
        state: 40 ms of PQN's 32 envs' checkpoint): a checkpoint converts them as it saves."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

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


@dataclass
class MemberRun:
    """One member's run as the loop drives it. Members share every setting but the seed,
    ``stop_on_return`` and ``max_abs_q``."""

    settings: LoopSettings
    tb: TensorBoardLogger
    save_checkpoint: Callable[[LoopState], None]
    #: Called once, when the member's run ends, with its result (the agent then holds the
    #: member's final state).
    finish: Callable[[LoopResult], None]
    #: A resumed run's state (None: a new run).
    state: LoopState | None = None


@dataclass
class _Member:
    """What the loop tracks of one member."""

    index: int
    run: MemberRun
    state: LoopState
    envs: slice  # its sub-envs
    #: The step and wall-clock time of its last log point (for time/sps).
    last_log_step: int = 0
    last_log_time: float = 0.0
    final: Evaluation | None = None
    eval_step: int = -1


def train(agent: Agent, envs: gym.vector.VectorEnv, eval_envs: SyncVectorEnv,
          runs: list[MemberRun], stop: StopSignals | None = None) -> None:
    """Train every member's run until ``total_steps`` (or its ``stop_on_return``); a run with
    a ``state`` resumes (the members of a population are all new, or all resume from one
    step). ``envs`` and ``eval_envs`` hold the members' sub-envs one member after another.

    Training also ends when ``stop`` receives a signal (outcome "interrupted"): after the
    current env step, between the gradient steps of an update, or after the current step of an
    evaluation's episodes; what was cut short is finished when the run resumes, so its curves
    are those of a run never stopped. A member's run ends too when the agent reports a
    non-finite loss or Q-value for it ("diverged"). The checkpoint is then saved (after a
    divergence, the last good one is kept), and the partial log interval is written. A resumed
    run continues the episodes in progress at its checkpoint when their state could be saved,
    and otherwise starts new ones (its envs reset with a seed derived from the step).
    """
    _Loop(agent, envs, eval_envs, runs, stop).run()


class _Loop:
    """One call of :func:`train`: the population's members, the env step they are at and
    the observations the agent acts on next."""

    def __init__(self, agent: Agent, envs: gym.vector.VectorEnv, eval_envs: SyncVectorEnv,
                 runs: list[MemberRun], stop: StopSignals | None):
        self.agent, self.envs, self.eval_envs, self.runs, self.stop = (agent, envs, eval_envs,
                                                                        runs, stop)
        self.count = len(runs)
        self.n = envs.num_envs // self.count  # envs per member
        self.members = [_Member(i, run, run.state or LoopState.start(run.settings),
                                slice(i * self.n, (i + 1) * self.n))
                        for i, run in enumerate(runs)]
        if len({m.state.step for m in self.members}) != 1:
            raise ValueError("the members of a population resume from one step")
        # total_steps, log_every, eval_every, checkpoint_every, eval: one for every member
        self.shared = runs[0].settings
        self.step = self.members[0].state.step
        now = time.perf_counter()
        for m in self.members:
            if m.state.logged_before_partial is not None:  # hidden with the partial point
                for tag, value in m.state.logged_before_partial.items():
                    m.run.tb.scalar(tag, value, self.step)
                m.state.logged_before_partial = None
            m.last_log_step, m.last_log_time = self.step, now
        self.started = time.perf_counter() - self.members[0].state.wall_seconds
        self.stopping = (lambda: stop.received is not None) if stop is not None else None
        # The agent's metric that train.max_abs_q bounds (the agent contract's value_metric).
        bounded = any(r.settings.max_abs_q is not None for r in runs)
        self.checked = agent.value_metric if bounded else None
        self.live = list(self.members)  # the members whose runs go on (close() removes them)
        self.obs = self._first_observations()

    def active(self) -> list[_Member]:
        return list(self.live)  # a copy: close() may remove one while a caller goes through

    def _first_observations(self) -> np.ndarray:
        """The envs' current observations: those of the checkpoint's episodes, restored, or
        of new episodes."""
        members, step = self.members, self.step
        if all(m.state.env_state is not None for m in members) and all(
                snapshot.restore(self.envs, m.state.env_state, m.envs) for m in members):
            return np.concatenate([m.state.obs.numpy() for m in members])
        if step:
            log.info("the envs' state was not saved or does not fit them: resuming with new "
                     "episodes")
        seeds = [r.settings.seed + step + j for r in self.runs for j in range(self.n)]
        return self.envs.reset(seed=seeds)[0].copy()

    def run(self) -> None:
        progress = Progress(self.shared.total_steps, start_step=self.step)
        try:
            # Resumed: first what a stop cut short at the checkpoint's step (the rest of an
            # update, a log point, an evaluation); all of it is done already after any other
            # checkpoint.
            if self.step:
                self.record(self.agent.finish_pending())
                ended = self.post_step()
            else:  # the untrained agent: where every curve starts
                ended = self.scheduled_eval()
            while ended is None and self.live and self.step < self.shared.total_steps:
                ended = self.env_step(progress)
            where = f"at step {self.step}"
            if ended is None and self.live and not self.final_eval():  # the budget is spent
                ended, where = "interrupted", "in the final evaluation"
        finally:
            progress.close()
        for m in self.active():
            if ended is None:
                self.close(m, "completed")
            else:
                self.close(m, "interrupted", f"interrupted by {self.stop.name} {where}")

    def env_step(self, progress: Progress) -> str | None:
        """Act, step the envs, let the agent learn, and do what is due after the step; returns
        "interrupted" when training must end."""
        shape = (self.count, self.n)  # [members, envs of each]
        obs_shape = (*shape, *self.envs.single_observation_space.shape)
        action = self.agent.act(self.obs.reshape(obs_shape)).reshape(-1)
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        self.step += self.n
        for m in self.live:
            m.state.step = self.step
        real_next_obs, last_return = next_obs, None
        if "final_obs" in info:  # some sub-env's episode ended and it was reset
            real_next_obs = next_obs.copy()
            for i in np.flatnonzero(info["_final_obs"]):
                real_next_obs[i] = info["final_obs"][i]
            last_return = self.count_episodes(info["final_info"])
        metrics = self.agent.learn(Transition(
            self.obs.reshape(obs_shape), action.reshape(shape), reward.reshape(shape),
            real_next_obs.reshape(obs_shape), terminated.reshape(shape),
            truncated.reshape(shape)), self.stopping)
        self.obs = next_obs.copy()  # the env's buffer: the next step overwrites it
        self.record(metrics)
        progress.update(self.step, last_return)
        if self.stop is not None and self.stop.received:  # post_step() runs after the resume
            return "interrupted"
        ended = self.post_step()
        if ended is None and self.stop is not None and self.stop.received:
            return "interrupted"
        return ended

    def count_episodes(self, stats: dict) -> float | None:
        """Record the episodes that ended in this step (``final_info``); returns the return of
        the last one. Not every end is a finished episode: an Atari life lost ends the
        learner's episode, while "episode" reports whole games."""
        last_return = None
        for i in np.flatnonzero(stats.get("_episode", ())):
            m = self.members[i // self.n]
            if m not in self.live:  # its run has ended
                continue
            last_return = float(stats["episode"]["r"][i])
            m.state.ended_returns.append(last_return)
            m.state.ended_lengths.append(int(stats["episode"]["l"][i]))
            m.state.episodes += 1
        return last_return

    def final_eval(self) -> bool:
        """The last, partial log interval and the final evaluation (unless one just ran at
        this step); False when a stop signal cut it short."""
        for m in self.active():
            if _pending(m.state):
                _log_point(m, self.agent)
        if all(m.eval_step == self.step for m in self.active()):
            return True
        results = self.run_eval()
        if results is None:
            return False
        for m in self.active():
            m.final = results[m.index]
        return True

    def run_eval(self) -> list[Evaluation] | None:
        t = time.perf_counter()
        shared, step = self.shared, self.step
        results = evaluate(self.agent, self.eval_envs,
                           [r.settings.seed + EVAL_SEED_OFFSET for r in self.runs],
                           self.stopping, shared.eval_epsilon)
        for m in self.active():
            m.state.eval_seconds += time.perf_counter() - t
        if results is None:
            return None
        for m in self.active():
            result = results[m.index]
            m.run.tb.scalar("eval/return_mean", float(result.returns.mean()), step)
            m.run.tb.scalar("eval/return_std", float(result.returns.std()), step)
            m.run.tb.scalar("eval/truncated", float(result.truncated.mean()), step)
            if shared.eval_cap is not None and result.truncated.any():
                log.warning("evaluation at step %d: %d of %d episodes reached "
                            "eval.max_episode_steps=%d and were cut (counted as truncated)",
                            step, result.truncated.sum(), len(result.truncated),
                            shared.eval_cap)
        return results

    def scheduled_eval(self) -> str | None:
        """Run the evaluation due at ``step``, if one is (members that reach their
        ``stop_on_return`` end); returns "interrupted" when training must end."""
        step = self.step
        due = [m for m in self.active() if m.state.next_eval <= step < self.shared.total_steps]
        if not due:  # the final one: after the loop
            return None
        results = self.run_eval()
        if results is None:
            return "interrupted"
        for m in due:
            m.final, m.eval_step = results[m.index], step
            m.state.next_eval += self.shared.eval_every
            target = m.run.settings.stop_on_return
            if target is not None and m.final.returns.mean() >= target:
                log.info("stopping at step %d: greedy eval return %.2f >= %g "
                         "(train.stop_on_return)", step, m.final.returns.mean(), target)
                m.state.stopped_early = True
                if _pending(m.state):
                    _log_point(m, self.agent)
                self.close(m, "completed")
        return None

    def record(self, metrics: dict[str, torch.Tensor] | None) -> None:
        """Add an update's metrics to the members' sums; a member with a metric that is not
        finite has diverged."""
        if metrics is None:
            return
        checked = self.checked
        if checked is not None and checked not in metrics:  # else divergence goes unseen
            raise ValueError(f"{type(self.agent).__name__}.learn reports no {checked!r} (its "
                             "value_metric), which train.max_abs_q bounds: report it, or set "
                             "value_metric = None")
        # One sync per update: a NaN or inf in any metric makes the sum non-finite.
        if not math.isfinite(float(sum(v.sum() for v in metrics.values()))):
            finite = {k: torch.isfinite(v).tolist() for k, v in metrics.items()}
            for m in self.active():
                bad = next((k for k, ok in finite.items() if not ok[m.index]), None)
                if bad is not None:
                    self.close(m, "diverged", f"train/{bad} is "
                                              f"{float(metrics[bad][m.index])} at step "
                                              f"{self.step}")
        for m in self.active():
            sums = m.state.sums
            for key, value in metrics.items():
                mine = value[m.index]
                sums[key] = sums[key] + mine if key in sums else mine.clone()
            m.state.updates += 1

    def post_step(self) -> str | None:
        """What follows an env step and its update: the log points, evaluation and checkpoints
        due at ``step``. Each is done once (the counters say so), so a resumed run can call it
        for the step it stopped at. Returns "interrupted" when training must end."""
        if not self.live:  # every member ended (diverged) in this step's update
            return None
        step, lead = self.step, self.live[0].state  # the live members' schedules are one
        if step < lead.next_log and step < lead.next_eval and step < lead.next_checkpoint:
            return None  # nothing due: most steps
        for m in self.active():
            if step >= m.state.next_log:
                means = _log_point(m, self.agent)
                m.state.next_log += self.shared.log_every
                limit = m.run.settings.max_abs_q
                if limit is not None and abs(value := means.get(self.checked, 0.0)) > limit:
                    self.close(m, "diverged", f"train/{self.checked} is {value:.3g} at step "
                                              f"{step}, beyond train.max_abs_q={limit:g}")
        ended = self.scheduled_eval()
        if ended is None and step < self.shared.total_steps:  # the final one: after the loop
            for m in self.active():
                if step >= m.state.next_checkpoint:
                    m.state.next_checkpoint += self.shared.checkpoint_every
                    self.checkpoint(m)
        return ended

    def checkpoint(self, m: _Member) -> None:
        m.state.wall_seconds = time.perf_counter() - self.started
        m.state.env_state = snapshot.capture(self.envs, m.envs)
        m.state.obs = torch.from_numpy(self.obs[m.envs].copy())
        m.run.save_checkpoint(m.state)

    def close(self, m: _Member, outcome: str, error: str | None = None) -> None:
        """End member ``m``'s run: its checkpoint (after a divergence, the last good one is
        kept) and partial log point, then its ``finish``."""
        s = m.state
        if outcome == "diverged":
            s.wall_seconds = time.perf_counter() - self.started
        elif outcome == "interrupted" and _pending(s):
            # The checkpoint keeps the interval's sums, so a resumed run logs the point a run
            # never stopped would; this run's curves still end where it stopped (the partial
            # point).
            tb = m.run.tb
            s.logged_before_partial = (dict(tb.latest_points) if tb.latest_step == self.step
                                       else {})
            self.checkpoint(m)
            s.logged_before_partial = None
        else:
            self.checkpoint(m)
        if outcome != "completed" and _pending(s):
            _log_point(m, self.agent)
        self.live.remove(m)
        m.run.finish(LoopResult(state=s, evaluation=m.final if outcome == "completed" else None,
                                outcome=outcome, error=error))


def _pending(state: LoopState) -> bool:
    """Whether anything was reported since the last log point."""
    return bool(state.updates or state.ended_returns)


def _log_point(m: _Member, agent: Agent) -> dict[str, float]:
    """Write member ``m``'s train/ and time/ scalars at its current step; returns the agent's
    metrics averaged since the last point."""
    state, tb = m.state, m.run.tb
    step, now = state.step, time.perf_counter()
    means = {key: float(total) / state.updates for key, total in state.sums.items()}
    for key, mean in means.items():
        tb.scalar(f"train/{key}", mean, step)
    state.sums, state.updates = {}, 0
    if state.ended_returns:
        tb.scalar("train/episode_return", float(np.mean(state.ended_returns)), step)
        tb.scalar("train/episode_length", float(np.mean(state.ended_lengths)), step)
        state.ended_returns, state.ended_lengths = [], []
    for key, values in agent.log_scalars().items():
        tb.scalar(f"train/{key}", values[m.index], step)
    tb.scalar("time/sps", (step - m.last_log_step) / max(now - m.last_log_time, 1e-9), step)
    m.last_log_step, m.last_log_time = step, now
    return means
