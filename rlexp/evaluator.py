"""Greedy evaluation of an agent on a vector env: what training's evaluations and
``python -m rlexp.evaluate`` play, and an episode recorded as a GIF."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv

from rlexp.agents import Agent

# Greedy evaluations use env seeds far from the training envs' (seed, seed + 1, ...).
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class Evaluation:
    #: The return of each greedy episode.
    returns: np.ndarray
    #: Which episodes were cut by a time limit (the env's, or ``eval.max_episode_steps``).
    truncated: np.ndarray


def evaluate(agent: Agent, envs: gym.vector.VectorEnv, seeds: Sequence[int],
             should_stop: Callable[[], bool] | None = None, epsilon: float = 0.0
             ) -> list[Evaluation] | None:
    """Each member's evaluation: one episode per sub-env of ``envs`` (``episodes`` for each
    member, member-major), those of member ``i`` reset with seeds ``seeds[i]``,
    ``seeds[i] + 1``, ...; None if ``should_stop()`` became true before they all ended (it is
    asked after every step). ``envs``: a SyncVectorEnv, or a batched vector env whose
    ``reset(seed=[...])`` seeds each sub-env as its own env would be (as
    :func:`rlexp.build.make_eval_envs` makes them).

    Actions are greedy, or with probability ``epsilon`` uniformly random (``eval.epsilon``,
    as the Atari literature evaluates), drawn from a generator seeded with the member's seed:
    the same seeds at every evaluation of a run make its evaluations comparable over time, and
    training draws nothing for them. The envs' time limit (:func:`rlexp.build.make_eval_envs`)
    makes every episode end.
    """
    members = len(seeds)
    episodes = envs.num_envs // members
    obs, _ = envs.reset(seed=[seed + j for seed in seeds for j in range(episodes)])
    explore = [_Exploration(epsilon, envs.single_action_space.n, seed) for seed in seeds]
    returns = np.zeros(envs.num_envs)
    cut = np.zeros(envs.num_envs, dtype=bool)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        greedy = agent.act(obs.reshape(members, episodes, *obs.shape[1:]), explore=False)
        actions = np.concatenate([e(a) for e, a in zip(explore, greedy, strict=True)])
        if isinstance(envs, SyncVectorEnv):
            # Only the episodes still running are stepped (the vector env's own step would
            # step and reset every sub-env: most of a population's evaluation time, as its
            # members' episodes end at different steps). An ended episode's row keeps its
            # last observation.
            for k in np.flatnonzero(running):
                obs[k], reward, terminated, truncated, _ = envs.envs[k].step(actions[k])
                returns[k] += reward
                if terminated or truncated:
                    running[k] = False
                    cut[k] = truncated and not terminated
        else:  # one step for every episode; the rows of ended ones are no longer read
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns[running] += rewards[running]
            ended = running & (terminated | truncated)
            cut[ended] = truncated[ended] & ~terminated[ended]
            running &= ~ended
        if should_stop is not None and should_stop():
            return None
    return [Evaluation(r, c) for r, c in zip(returns.reshape(members, episodes),
                                             cut.reshape(members, episodes), strict=True)]


class _Exploration:
    """Greedy actions -> epsilon-greedy ones, from the evaluation's own generator."""

    def __init__(self, epsilon: float, n_actions: int, seed: int):
        self.epsilon, self.n_actions = epsilon, int(n_actions)
        self.rng = np.random.default_rng(seed)

    def __call__(self, greedy: np.ndarray) -> np.ndarray:
        if self.epsilon == 0.0:
            return greedy
        random = self.rng.random(len(greedy)) < self.epsilon
        return np.where(random, self.rng.integers(self.n_actions, size=len(greedy)), greedy)


#: Rendered frames are shrunk to at most this many pixels on their longer side.
VIDEO_MAX_SIZE = 400


def record_episode(agent: Agent, env: gym.Env, seed: int, path: Path, epsilon: float = 0.0
                   ) -> float:
    """Play one evaluation episode in ``env`` (render_mode="rgb_array"), save it as a GIF."""
    from PIL import Image  # tensorboard's dependency; only needed here

    explore = _Exploration(epsilon, env.action_space.n, seed)
    obs, _ = env.reset(seed=seed)
    frames, total, done = [], 0.0, False
    while not done:
        frames.append(env.render())
        action = explore(agent.act(np.asarray(obs)[None, None], explore=False)[0])[0]
        obs, reward, terminated, truncated, _ = env.step(int(action))
        total += float(reward)
        done = terminated or truncated
    frames.append(env.render())
    images = [Image.fromarray(f) for f in frames]
    shrink = max(1, -(-max(images[0].size) // VIDEO_MAX_SIZE))
    images = [image.reduce(shrink) for image in images]
    fps = env.metadata.get("render_fps") or 30
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return total
