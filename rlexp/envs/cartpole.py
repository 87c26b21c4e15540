"""CartPole's evaluation episodes stepped as one batch.

An evaluation plays ``eval.episodes`` episodes for every member of a population, each from its
own seed. Stepped one gymnasium env at a time, that is one Python call per episode and step, a
large share of a population's whole run (docs/benchmarks.md, "Measurements behind the code").
gymnasium ships CartPole vectorized (``CartPoleVectorEnv``: one numpy computation for every
sub-env), but seeds all its sub-envs from one generator. :class:`SeededCartPoleVectorEnv`
is that env with each sub-env reset as gymnasium's ``CartPoleEnv.reset(seed=s)`` resets, so an
evaluation's episodes, and their returns, are those of the per-env evaluation, bit for bit
(tests/test_evaluate_and_presets.py checks it).

Only evaluations use it: they start every episode from a seed and stop stepping an episode
once it ends. Training envs stay gymnasium's per-env vector env, whose episodes reset
themselves from their own generators and whose state a checkpoint saves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.utils import seeding


class SeededCartPoleVectorEnv(CartPoleVectorEnv):
    """gymnasium's vectorized CartPole whose ``reset(seed=[s0, s1, ...])`` starts sub-env ``k``
    where ``CartPoleEnv.reset(seed=sk)`` starts (a uniform draw from a generator seeded with
    ``sk``, as gymnasium's per-env reset draws it). Its own next-step autoreset of an ended
    sub-env is left as it is: an evaluation no longer reads that sub-env."""

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None or isinstance(seed, int | np.integer):
            return super().reset(seed=seed, options=options)
        if len(seed) != self.num_envs:
            raise ValueError(f"{len(seed)} seeds for {self.num_envs} sub-envs")
        _, info = super().reset(seed=seed[0], options=options)
        for k, s in enumerate(seed):
            self.state[:, k] = seeding.np_random(s)[0].uniform(low=self.low, high=self.high,
                                                               size=(4,))
        return self.state.T.astype(np.float32), info


def batched_eval_envs(env_id: str, make_kwargs: dict[str, Any], count: int,
                      max_episode_steps: int) -> SeededCartPoleVectorEnv | None:
    """``count`` CartPole evaluation episodes as one :class:`SeededCartPoleVectorEnv`, when
    ``env_id`` is a CartPole gymnasium vectorizes (its registration names CartPoleVectorEnv)
    and nothing but the time limit is passed to it; else None (the per-env evaluation)."""
    spec = gym.registry.get(env_id)
    vector = getattr(spec, "vector_entry_point", None)
    if vector != f"{CartPoleVectorEnv.__module__}:{CartPoleVectorEnv.__name__}" or spec.kwargs \
            or any(key != "max_episode_steps" for key in make_kwargs):
        return None
    return SeededCartPoleVectorEnv(num_envs=count, max_episode_steps=max_episode_steps)
