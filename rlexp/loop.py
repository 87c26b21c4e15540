"""The interaction loop: act -> env.step -> agent.learn -> log / evaluate.

It knows the :class:`~rlexp.agents.base.Agent` interface, never a concrete agent, and does no
torch work of its own: per env step it adds only a few numpy operations to what the env and the
agent cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from rlexp.agents import Agent, Transition
from rlexp.evaluate import evaluate
from rlexp.logger import Progress, TensorBoardLogger


@dataclass
class LoopSettings:
    total_steps: int
    seed: int
    log_every: int
    eval_every: int  # 0: only at the end


@dataclass
class LoopResult:
    env_steps: int
    episodes: int
    eval_returns: np.ndarray
    wall_seconds: float


# Greedy evaluations use env seeds far from the training envs' (seed, seed + 1, ...).
EVAL_SEED_OFFSET = 1_000_003


def train(agent: Agent, envs: gym.vector.VectorEnv, eval_envs: gym.vector.VectorEnv,
          settings: LoopSettings, tb: TensorBoardLogger) -> LoopResult:
    n = envs.num_envs
    started = time.perf_counter()
    progress = Progress(settings.total_steps)
    # Running sums of what the agent reports, as tensors: no device sync until they are logged.
    sums: dict[str, torch.Tensor] = {}
    updates = episodes = 0
    ended_returns: list[float] = []  # episodes that ended since the last log line
    ended_lengths: list[int] = []
    last_log_step, last_log_time = 0, started
    next_log, next_eval = settings.log_every, settings.eval_every or settings.total_steps + 1

    def run_eval(step: int) -> np.ndarray:
        returns = evaluate(agent, eval_envs, settings.seed + EVAL_SEED_OFFSET)
        tb.scalar("eval/return_mean", float(returns.mean()), step)
        tb.scalar("eval/return_std", float(returns.std()), step)
        return returns

    obs, _ = envs.reset(seed=settings.seed)
    envs.action_space.seed(settings.seed)
    step = 0
    try:
        while step < settings.total_steps:
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, info = envs.step(action)
            step += n
            last_return = None
            real_next_obs = next_obs
            if "episode" in info:  # some sub-env finished an episode and was reset
                done = info["_episode"]
                real_next_obs = next_obs.copy()
                for i in np.flatnonzero(done):
                    real_next_obs[i] = info["final_obs"][i]
                    last_return = float(info["episode"]["r"][i])
                    ended_returns.append(last_return)
                    ended_lengths.append(int(info["episode"]["l"][i]))
                    episodes += 1
            metrics = agent.learn(Transition(obs, action, reward, real_next_obs, terminated,
                                             truncated))
            obs = next_obs
            if metrics is not None:
                for key, value in metrics.items():
                    sums[key] = sums[key] + value if key in sums else value
                updates += 1
            progress.update(step, last_return)

            if step >= next_log:
                for key, total in sums.items():
                    tb.scalar(f"train/{key}", float(total) / updates, step)
                sums, updates = {}, 0
                if ended_returns:
                    tb.scalar("train/episode_return", float(np.mean(ended_returns)), step)
                    tb.scalar("train/episode_length", float(np.mean(ended_lengths)), step)
                    ended_returns, ended_lengths = [], []
                tb.scalar("train/epsilon", agent.epsilon, step)
                now = time.perf_counter()
                tb.scalar("time/sps", (step - last_log_step) / (now - last_log_time), step)
                last_log_step, last_log_time = step, now
                next_log += settings.log_every
            if step >= next_eval and step < settings.total_steps:  # the final one comes below
                run_eval(step)
                next_eval += settings.eval_every
        eval_returns = run_eval(step)
    finally:
        progress.close()
    return LoopResult(env_steps=step, episodes=episodes, eval_returns=eval_returns,
                      wall_seconds=time.perf_counter() - started)
