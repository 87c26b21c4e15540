"""An env of any observation space, reward type and episode end, as third-party envs come:
``env=gym env.id=tests.generated_env:Generated-v0 +env.kwargs.obs=box ...`` (every argument of
:class:`GeneratedEnv` is a keyword of ``env.kwargs``).

Its dynamics are deterministic given its seed and learnable: the reward is 1 when the action
equals the parity of the step count within the episode, so a Q-network that reads its
observations (which carry that parity) does better than chance.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: Observation kinds: a Box of ``shape`` and ``dtype``; or these spaces.
OBS_KINDS = ("box", "discrete", "multibinary", "multidiscrete")
#: How rewards are returned.
REWARD_TYPES = {"float": float, "int": int, "np.float32": np.float32,
                "np.float64": np.float64, "np.int64": np.int64}


class GeneratedEnv(gym.Env):
    def __init__(self, obs: str = "box", shape=(3,), dtype: str = "float64",
                 reward: str = "float", length: int = 7, end: str = "terminate",
                 n_actions: int = 2, action_start: int = 0, obs_start: int = 0):
        shape = tuple(shape)
        if obs == "box":
            dtype = np.dtype(dtype)
            if dtype == np.bool_:
                self.observation_space = spaces.Box(False, True, shape, dtype)
            elif dtype == np.uint8:
                self.observation_space = spaces.Box(0, 255, shape, dtype)
            else:
                self.observation_space = spaces.Box(-3, 3, shape, dtype)
        elif obs == "discrete":
            self.observation_space = spaces.Discrete(length + 1, start=obs_start)
        elif obs == "multibinary":
            self.observation_space = spaces.MultiBinary(shape or (1,))
        else:
            self.observation_space = spaces.MultiDiscrete(np.full(shape or (1,), 3),
                                                          start=np.full(shape or (1,), obs_start))
        self.action_space = spaces.Discrete(n_actions, start=action_start)
        self.reward_type = REWARD_TYPES[reward]
        self.length, self.end = length, end
        self.t = 0

    def _obs(self):
        space, parity = self.observation_space, self.t % 2
        if isinstance(space, spaces.Discrete):
            return np.int64(space.start + self.t)
        if isinstance(space, spaces.MultiBinary):
            out = self.np_random.integers(0, 2, space.shape, dtype=np.int8)
            out.reshape(-1)[0] = parity
            return out
        if isinstance(space, spaces.MultiDiscrete):
            out = space.start + self.np_random.integers(0, 3, space.shape)
            out.reshape(-1)[0] = space.start.reshape(-1)[0] + parity
            return out.astype(space.dtype)
        if space.dtype == np.bool_:
            out = self.np_random.integers(0, 2, space.shape).astype(bool)
        elif space.dtype == np.uint8:
            out = self.np_random.integers(0, 256, space.shape).astype(np.uint8)
        else:
            out = self.np_random.uniform(-1, 1, space.shape).astype(space.dtype)
        flat = out.reshape(-1)
        if flat.size:
            flat[0] = parity if space.dtype != np.uint8 else 255 * parity
        return out

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"start": np.float64(0.5)}

    def step(self, action):
        assert self.action_space.contains(action), action
        good = int(action) - int(self.action_space.start) == self.t % 2
        self.t += 1
        over = self.t >= self.length
        terminated = over and self.end == "terminate"
        truncated = over and self.end == "truncate"
        info = {"good": np.bool_(good), "t": np.int64(self.t), "score": np.float64(good)}
        return (self._obs(), self.reward_type(good), np.bool_(terminated), truncated, info)


gym.register("Generated-v0", entry_point=GeneratedEnv, max_episode_steps=1000)
