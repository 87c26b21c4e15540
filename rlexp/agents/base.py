"""The agent contract: everything the training loop, evaluation and ``load_agent`` use of an
agent, and no more.

- ``act(obs, explore)``: actions (numpy ``[batch]``) for a batch of observations (one per env):
  exploring when ``explore`` is true, greedy otherwise.
- ``learn(batch, should_stop)``: called once after every vector-env step with the transitions
  it produced; the agent decides whether to update (and how often). Returns the scalars to log
  as ``train/<name>``, as tensors, when it updated, else ``None``. An agent whose update takes
  several gradient steps asks ``should_stop()`` before each; when it says yes, the agent returns
  ``None`` at once and keeps the rest of the update pending (in its state dict).
- ``finish_pending()``: the rest of an update a stop cut short, when a run resumes, before it
  acts again; returns what ``learn`` would have returned (``None`` when nothing was pending).
- ``q_values(obs)``: the action values (a tensor ``[batch, n_actions]``) of a batch of
  observations.
- ``log_scalars()``: the agent's state worth a curve (e.g. its exploration rate), logged as
  ``train/<name>`` at every log point, whether or not it updated.
- ``state_dict()`` / ``load_state_dict()``: everything needed to continue training.
- ``value_metric``: the key of ``learn``'s scalars whose mean over a log interval
  ``train.max_abs_q`` bounds (the divergence check); an agent must report it, or set it to
  ``None`` to opt out of the check.

Every agent is built the same way (:func:`rlexp.build.make_agent`), from its own config
dataclass (``Agent.Config``) and plain arguments; agents know nothing of Hydra. Adding one:
``rlexp/agents/NAME.py`` with an ``Agent`` subclass that declares its ``Config`` (whose ``name``
default is NAME), and ``conf/agent/NAME.yaml``; the registry (:data:`rlexp.agents.AGENTS`), the
config schema and the tests find it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Transition:
    """A batch of transitions, one row per env, as the env returned them (numpy arrays)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    #: The observation the action led to; the final one when the episode ended (never the reset).
    next_obs: np.ndarray
    #: The episode ended in a terminal state: no bootstrap from ``next_obs``.
    terminated: np.ndarray
    #: The episode was cut by a time limit: the target still bootstraps from ``next_obs``.
    truncated: np.ndarray


@dataclass
class AgentConfig:
    """The field every agent config has; each agent's dataclass adds its own."""

    #: Which agent this config is for (fixed by the agent's YAML; selects the agent class).
    name: str = ""


class Agent(ABC):
    """Base class of rlexp's agents (see the module docstring for the contract)."""

    #: The agent's config dataclass; registered as the schema of ``conf/agent/<name>.yaml``.
    Config: ClassVar[type[AgentConfig]]
    #: The metric of ``learn`` that ``train.max_abs_q`` bounds; None: no divergence check.
    value_metric: ClassVar[str | None] = "q_mean"

    def __init__(self, cfg: AgentConfig, observation_space: spaces.Space,
                 action_space: spaces.Space, make_optimizer: OptimizerFactory,
                 device: torch.device, total_steps: int, seed: int, frame_stack: int = 1):
        # frame_stack: observations stack this many frames along their first axis (the env's
        # frame stacking; 1: none), for agents whose replay memory stores each frame once.
        self.cfg = cfg
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = device
        self.total_steps = total_steps

    @abstractmethod
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Actions for a batch of observations: exploring if ``explore``, else greedy."""

    @abstractmethod
    def learn(self, batch: Transition, should_stop: Callable[[], bool] | None = None
              ) -> dict[str, torch.Tensor] | None:
        """Learn from one vector-env step; return scalars to log when an update happened."""

    def finish_pending(self) -> dict[str, torch.Tensor] | None:
        """Finish an update that ``should_stop`` cut short (none, for one-step updates)."""
        return None

    @abstractmethod
    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Action values ``[batch, n_actions]`` for a batch of observations."""

    def log_scalars(self) -> dict[str, float]:
        """The agent's state logged at every log point (none by default)."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training (tensors, numbers, strings, lists, dicts)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from what ``state_dict`` returned."""
