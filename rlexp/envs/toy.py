"""A small discrete MDP with a known model, registered with gymnasium as ``rlexp/Toy-v0``.

Like gymnasium's toy-text envs it exposes its whole model as
``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]``, so the optimal Q* can be
computed exactly (:func:`rlexp.envs.planning.value_iteration`) and a learner checked against it.

Variants:

``chain`` (default)
    ``n_states`` cells in a row; every episode starts in cell 0. Action 1 moves right, action 0
    moves left. Moving right into the last cell pays +1 and ends the episode. Moving left in cell
    0 pays a small ``exit_reward`` (0.1) and also ends it: a cheap exit that a learner with too
    little exploration settles for, while the optimal policy (for gamma close to 1) is to walk
    right all the way.

``random``
    The original blog version: 4 states, 2 actions; the next state is uniform at random and the
    reward an integer drawn uniformly from [-10, 10); the episode terminates on a negative reward.
    Neither state nor action matters, so Q* is the same for every pair.

Episodes longer than ``max_episode_steps`` (given to ``gymnasium.make``) are truncated, not
terminated, by gymnasium's TimeLimit wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlexp.envs.base import EnvConfig

VARIANTS = ("chain", "random")
DEFAULT_N_STATES = {"chain": 7, "random": 4}

# One outcome of taking an action: (probability, next_state, reward, terminated).
Outcome = tuple[float, int, float, bool]

TOY_ID = "rlexp/Toy-v0"


def chain_model(n_states: int, exit_reward: float = 0.1) -> dict[int, dict[int, list[Outcome]]]:
    """The ``chain`` variant's transition model ``P[s][a]``."""
    goal = n_states - 1
    model: dict[int, dict[int, list[Outcome]]] = {}
    for s in range(n_states):
        if s == goal:  # terminal: never acted from, modelled as an absorbing no-reward state
            model[s] = {a: [(1.0, s, 0.0, True)] for a in (0, 1)}
            continue
        left = [(1.0, 0, exit_reward, True)] if s == 0 else [(1.0, s - 1, 0.0, False)]
        right = [(1.0, goal, 1.0, True)] if s + 1 == goal else [(1.0, s + 1, 0.0, False)]
        model[s] = {0: left, 1: right}
    return model


def random_model(n_states: int, n_actions: int = 2) -> dict[int, dict[int, list[Outcome]]]:
    """The ``random`` variant's model: uniform next state, uniform integer reward in [-10, 10)."""
    rewards = range(-10, 10)
    p = 1.0 / (n_states * len(rewards))
    outcomes = [(p, s2, float(r), r < 0) for s2 in range(n_states) for r in rewards]
    return {s: {a: list(outcomes) for a in range(n_actions)} for s in range(n_states)}


class ToyEnv(gym.Env):
    """A discrete MDP sampled from its explicit model ``P`` (see the module docstring)."""

    metadata = {"render_modes": []}
    #: The model never changes: a resumed run's env snapshot (rlexp.envs.snapshot) leaves it out.
    snapshot_static = ("P", "_cdf")

    def __init__(self, variant: str = "chain", n_states: int | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
        n_states = DEFAULT_N_STATES[variant] if n_states is None else n_states
        if n_states < 2:
            raise ValueError(f"n_states={n_states} must be at least 2")
        self.variant = variant
        self.P = chain_model(n_states) if variant == "chain" else random_model(n_states)
        self.observation_space = spaces.Discrete(n_states)
        self.action_space = spaces.Discrete(2)
        # Sampling tables per (s, a): cumulative probabilities and outcome arrays, so a step is a
        # single searchsorted instead of a Python loop over outcomes.
        self._cdf = {}
        for s, by_action in self.P.items():
            for a, outcomes in by_action.items():
                probs, nexts, rewards, terms = (np.array(x) for x in zip(*outcomes, strict=True))
                self._cdf[s, a] = (np.cumsum(probs), nexts, rewards, terms)
        self._state = 0

    def _start_state(self) -> int:
        # The chain always starts at its left end; the random MDP anywhere.
        if self.variant == "chain":
            return 0
        return int(self.np_random.integers(self.observation_space.n))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = self._start_state()
        return self._state, {}

    def step(self, action):
        cdf, nexts, rewards, terms = self._cdf[self._state, int(action)]
        # min() guards against a cumulative sum that ends a rounding error below 1.
        i = min(int(np.searchsorted(cdf, self.np_random.random(), side="right")), len(cdf) - 1)
        self._state = int(nexts[i])
        return self._state, float(rewards[i]), bool(terms[i]), False, {}


@dataclass
class ToyEnvConfig(EnvConfig):
    """rlexp's toy MDP (:mod:`rlexp.envs.toy`), which exposes its model as ``P``."""

    name: str = "toy"
    id: str = TOY_ID
    #: chain (the action matters; needs exploration) or random (the original blog MDP).
    variant: str = "chain"
    #: Number of states; null: the variant's default (chain 7, random 4).
    n_states: int | None = None
    max_steps: int | None = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ValueError(f"env.variant={self.variant!r} is not one of {', '.join(VARIANTS)}")
        if self.n_states is not None and self.n_states < 2:
            raise ValueError(f"env.n_states={self.n_states} must be at least 2")
