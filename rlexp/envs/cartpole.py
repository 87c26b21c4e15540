"""CartPole stepped as one batch, for training and for evaluation.

gymnasium's CartPole costs ~24 us a step through its wrappers, one Python call per sub-env: a
fifth of a 32-env PQN run, more for a population's hundreds of envs. gymnasium ships CartPole
vectorized (``CartPoleVectorEnv``: one numpy computation for every sub-env), but seeds all its
sub-envs from one generator and resets an ended sub-env at the next step. rlexp needs each
sub-env to be the env gymnasium's per-env vector env steps, bit for bit: the same episodes, so
that choosing the batched form changes no curve. Two forms here:

- :class:`CartPoleTrainingEnvs`, the training envs: each sub-env has its own generator, seeded
  as ``CartPoleEnv.reset(seed=s)`` seeds it, and an ended sub-env is reset in the same step from
  it, with the ending observation and the episode's return and length in ``info`` as
  ``SyncVectorEnv(autoreset_mode=SAME_STEP)`` and ``RecordEpisodeStatistics`` put them. Its
  state (and any member's part of it) is saved as plain data, so a resumed run continues its
  episodes (:meth:`~CartPoleTrainingEnvs.state_dict`).
- :class:`SeededCartPoleVectorEnv`, the evaluation envs: an evaluation starts every episode
  from a seed and stops stepping an episode once it ends.

The dynamics are gymnasium's ``CartPoleVectorEnv.step``'s, the per-env step's arithmetic on
arrays (the tests check the episodes equal, bit for bit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
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


class CartPoleTrainingEnvs(CartPoleVectorEnv):
    """``num_envs`` CartPoles stepped as one, each the env ``gymnasium.make(env_id)`` makes inside
    rlexp's training vector env (see the module docstring)."""

    metadata = {**CartPoleVectorEnv.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, max_episode_steps: int):
        super().__init__(num_envs=num_envs, max_episode_steps=max_episode_steps)
        self.state = np.zeros((4, num_envs))
        #: Each sub-env's own generator, as its ``CartPoleEnv.np_random``.
        self.generators = [np.random.default_rng() for _ in range(num_envs)]
        self.returns = np.zeros(num_envs)
        self.started = np.zeros(num_envs)  # each episode's start (perf_counter), for "t"

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, int | np.integer):  # as SyncVectorEnv: seed + k for sub-env k
            seed = [int(seed) + k for k in range(self.num_envs)]
        if seed is not None:
            if len(seed) != self.num_envs:
                raise ValueError(f"{len(seed)} seeds for {self.num_envs} sub-envs")
            self.generators = [seeding.np_random(int(s))[0] for s in seed]
        self._start(np.arange(self.num_envs))
        return self.state.T.astype(np.float32), {}

    def _start(self, envs: np.ndarray) -> None:
        """New episodes in sub-envs ``envs``, each drawn from its own generator."""
        for k in envs:
            self.state[:, k] = self.generators[k].uniform(low=self.low, high=self.high, size=(4,))
        self.steps[envs] = 0
        self.returns[envs] = 0.0
        self.started[envs] = time.perf_counter()

    def step(self, action: np.ndarray):
        x, x_dot, theta, theta_dot = self.state
        force = np.where(action == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        self.state = np.stack((x + self.tau * x_dot, x_dot + self.tau * xacc,
                               theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc))
        x, theta = self.state[0], self.state[2]
        terminated = (x < -self.x_threshold) | (x > self.x_threshold) | \
            (theta < -self.theta_threshold_radians) | (theta > self.theta_threshold_radians)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        reward = np.ones(self.num_envs)
        self.returns += reward
        obs = self.state.T.astype(np.float32)
        ended = np.flatnonzero(terminated | truncated)
        if not len(ended):
            return obs, reward, terminated, truncated, {}
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[ended] = True
        final_obs = np.full(self.num_envs, None, dtype=object)
        for k in ended:
            final_obs[k] = obs[k].copy()
        episode = {"r": np.where(mask, self.returns, 0.0), "l": np.where(mask, self.steps, 0),
                   "t": np.where(mask, np.round(time.perf_counter() - self.started, 6), 0.0)}
        info = {"final_obs": final_obs, "_final_obs": mask,
                "final_info": {"episode": {**episode, **{f"_{k}": mask for k in episode}},
                               "_episode": mask},
                "_final_info": mask}
        self._start(ended)
        obs[ended] = self.state[:, ended].T.astype(np.float32)
        return obs, reward, terminated, truncated, info

    def state_dict(self, part: slice = slice(None)) -> dict[str, Any]:
        """Sub-envs ``part``'s state as plain data (a checkpoint loads it weights-only)."""
        return {"kind": type(self).__name__, "max_episode_steps": self.max_episode_steps,
                "state": torch.from_numpy(self.state[:, part].copy()),
                "steps": torch.from_numpy(self.steps[part].astype(np.int64)),
                "returns": torch.from_numpy(self.returns[part].copy()),
                "generators": [g.bit_generator.state for g in self.generators[part]]}

    def load_state_dict(self, state: dict[str, Any], part: slice = slice(None)) -> bool:
        """Put sub-envs ``part`` back into a state from :meth:`state_dict`; False when the
        state does not fit them (another env, another time limit or number of sub-envs)."""
        envs = range(self.num_envs)[part]
        if state.get("kind") != type(self).__name__ or \
                state.get("max_episode_steps") != self.max_episode_steps or \
                len(state.get("generators", ())) != len(envs):
            return False
        self.state[:, part] = state["state"].numpy()
        self.steps[part] = state["steps"].numpy()
        self.returns[part] = state["returns"].numpy()
        for k, generator in zip(envs, state["generators"], strict=True):
            self.generators[k] = np.random.default_rng()
            self.generators[k].bit_generator.state = generator
        self.started[part] = time.perf_counter()
        return True


def _vectorized(env_id: str, make_kwargs: dict[str, Any]) -> bool:
    """Whether ``env_id`` is a CartPole gymnasium vectorizes (its registration names
    CartPoleVectorEnv) and nothing but the time limit is passed to it."""
    spec = gym.registry.get(env_id)
    vector = getattr(spec, "vector_entry_point", None)
    return vector == f"{CartPoleVectorEnv.__module__}:{CartPoleVectorEnv.__name__}" and \
        not spec.kwargs and all(key == "max_episode_steps" for key in make_kwargs)


def batched_eval_envs(env_id: str, make_kwargs: dict[str, Any], count: int,
                      max_episode_steps: int) -> SeededCartPoleVectorEnv | None:
    """``count`` CartPole evaluation episodes as one :class:`SeededCartPoleVectorEnv`, where
    ``env_id`` is vectorized (see :func:`_vectorized`); else None (the per-env evaluation)."""
    if not _vectorized(env_id, make_kwargs):
        return None
    return SeededCartPoleVectorEnv(num_envs=count, max_episode_steps=max_episode_steps)


def batched_training_envs(env_id: str, make_kwargs: dict[str, Any], count: int
                          ) -> CartPoleTrainingEnvs | None:
    """``count`` training CartPoles as one :class:`CartPoleTrainingEnvs`, where ``env_id`` is
    vectorized (see :func:`_vectorized`); else None (gymnasium's per-env vector env)."""
    if not _vectorized(env_id, make_kwargs):
        return None
    limit = make_kwargs.get("max_episode_steps", gym.registry[env_id].max_episode_steps)
    return CartPoleTrainingEnvs(count, limit)
