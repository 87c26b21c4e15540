"""Envs that misbehave on purpose.

``env=gym env.id=tests.faulty_env:Faulty-v0``: two states, a reward of 1 per step; when reset
with one of ``crash_seeds`` it raises after ``crash_after`` steps (one failing run must not stop
a sweep). ``tests.faulty_env:Endless-v0``: no time limit, and no episode ever ends (an
evaluation must end all the same).
"""

import gymnasium as gym
from gymnasium import spaces


class FaultyEnv(gym.Env):
    def __init__(self, crash_seeds=(1,), crash_after: int = 1):
        self.observation_space = spaces.Discrete(2)
        self.action_space = spaces.Discrete(2)
        self.crash_seeds, self.crash_after = set(crash_seeds), crash_after
        self.crashing, self.steps = False, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.crashing = seed in self.crash_seeds
        return 0, {}

    def step(self, action):
        self.steps += 1
        if self.crashing and self.steps >= self.crash_after:
            raise RuntimeError("simulated crash in the env")
        return int(action), 1.0, self.steps % 10 == 0, False, {}


gym.register("Faulty-v0", entry_point=FaultyEnv, max_episode_steps=20)


class EndlessEnv(gym.Env):
    """Two states, reward 1 per step; episodes never terminate, and no time limit is set."""

    def __init__(self):
        self.observation_space = spaces.Discrete(2)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return int(action), 1.0, False, False, {}


gym.register("Endless-v0", entry_point=EndlessEnv)
