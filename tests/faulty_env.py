"""Envs that misbehave on purpose.

``env=gym env.id=tests.faulty_env:Faulty-v0``: two states, a reward of 1 per step; when reset
with one of ``crash_seeds`` it fails after ``crash_after`` steps (one failing run must not stop
a sweep): it raises, or with ``how=exit`` ends its process at once (a process killed), or with
``how=interrupt_parent`` sends SIGINT once to its parent process (a launcher stopped).
``tests.faulty_env:Endless-v0``: no time limit, and no episode ever ends (an evaluation must
end all the same).
"""

import os
import signal

import gymnasium as gym
from gymnasium import spaces


class FaultyEnv(gym.Env):
    interrupted = False  # in this process (interrupt_parent: once)

    def __init__(self, crash_seeds=(1,), crash_after: int = 1, how: str = "raise"):
        self.observation_space = spaces.Discrete(2)
        self.action_space = spaces.Discrete(2)
        self.crash_seeds, self.crash_after, self.how = set(crash_seeds), crash_after, how
        self.crashing, self.steps = False, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.crashing = seed in self.crash_seeds
        return 0, {}

    def step(self, action):
        self.steps += 1
        if self.crashing and self.steps >= self.crash_after:
            if self.how == "exit":
                os._exit(9)
            if self.how == "interrupt_parent":
                if not FaultyEnv.interrupted:
                    FaultyEnv.interrupted = True
                    os.kill(os.getppid(), signal.SIGINT)
            else:
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
