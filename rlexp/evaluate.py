"""Greedy evaluation: each episode on its own sub-env of a vector env, all stepped together."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlexp.agents import Agent


def evaluate(agent: Agent, envs: gym.vector.VectorEnv, seed: int) -> np.ndarray:
    """Returns of one greedy episode per sub-env of ``envs``, reset with seeds seed, seed+1, ...

    The same seeds at every evaluation of a run make its evaluations comparable over time.
    """
    obs, _ = envs.reset(seed=seed)
    n = envs.num_envs
    returns = np.zeros(n)
    running = np.ones(n, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = envs.step(agent.act(obs, explore=False))
        returns += np.where(running, reward, 0.0)
        # Sub-envs reset themselves when done; their later episodes are not counted.
        running &= ~(terminated | truncated)
    return returns
