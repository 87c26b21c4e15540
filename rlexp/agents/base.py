"""The agent contract: everything the training loop, evaluation and ``load_agent`` use of an
agent, and no more.

An agent is a *population*: ``members`` independent learners of one architecture trained as one
computation (a single run is a population of one). Every array the contract passes has a
leading member axis, and member ``i``'s results depend on member ``i``'s data and settings
only: no shared random stream, no mean over members.

- ``act(obs, explore)``: actions (numpy ``[members, envs]``) for observations
  ``[members, envs, ...]``: exploring when ``explore`` is true, greedy otherwise.
- ``learn(batch, should_stop)``: called once after every vector-env step with the transitions
  it produced (``[members, envs, ...]``); the agent decides whether to update (and how often).
  Returns the scalars to log as ``train/<name>``, as tensors ``[members]``, when it updated,
  else ``None``. An agent whose update takes several gradient steps asks ``should_stop()``
  before each; when it says yes, the agent returns ``None`` at once and keeps the rest of the
  update pending (in its state dict).
- ``finish_pending()``: the rest of an update a stop cut short, when a run resumes, before it
  acts again; returns what ``learn`` would have returned (``None`` when nothing was pending).
- ``q_values(obs)``: the action values (a tensor ``[members, batch, n_actions]``) of
  observations ``[members, batch, ...]``.
- ``log_scalars()``: the agent's state worth a curve (e.g. its exploration rate), one value per
  member, logged as ``train/<name>`` at every log point, whether or not it updated.
- ``state_dict(i)`` / ``load_state_dicts(states)``: everything member ``i`` needs to continue
  training, as the state dict of a population of one (so a member's checkpoint is a single
  run's); loading takes every member's at once.
- ``value_metric``: the key of ``learn``'s scalars whose mean over a log interval
  ``train.max_abs_q`` bounds (the divergence check); an agent must report it, or set it to
  ``None`` to opt out of the check.

Every agent is built the same way (:func:`rlexp.build.make_agent`), from one :class:`AgentSpec`:
one :class:`Member` per member (its config dataclass ``Agent.Config``, seed and learning rate),
the env's spaces and the optimizer; agents know nothing of Hydra. Before building one, the
builder and the runner ask its class about a config (``joins_populations``,
``memory_settings``, ``divergence_hints``).

Adding one: ``rlexp/agents/NAME.py`` with an ``Agent`` subclass that declares its ``Config``
(whose ``name`` default is NAME), and ``conf/agent/NAME.yaml``; the registry
(:data:`rlexp.agents.AGENTS`), the config schema and the tests find it. An agent in the user's
own package is the same module and a YAML in their config directory whose ``_target_`` names
the class (``docs/extending.md``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from rlexp.members import OptimizerFactory


@dataclass
class Transition:
    """A batch of transitions, ``[members, envs]`` rows, as the envs returned them (numpy)."""

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
    #: The agent class as an import path, for an agent from the user's own package (its YAML
    #: sets it: ``_target_: my_pkg.agents.MyAgent``); null: rlexp's agent named ``name``.
    _target_: str | None = None
    # The fields whose values may differ between the members of one population (the rest
    # must be equal); each agent's config extends it with its own.
    member_fields: ClassVar[tuple[str, ...]] = ()


@dataclass
class Member:
    """What one member of a population is, as its agent sees it."""

    cfg: AgentConfig
    #: Seeds the member's network initialisation and all of its own random draws.
    seed: int
    #: Its learning rate (``optimizer.lr``).
    lr: float


@dataclass
class AgentSpec:
    """Everything an agent is built from (:func:`rlexp.build.make_agent` makes it): its
    members, the env's spaces, and how to make its optimizer."""

    members: Sequence[Member]
    observation_space: spaces.Space
    action_space: spaces.Space
    #: The optimizer of member 0's config (the members' other settings are equal).
    make_optimizer: OptimizerFactory
    device: torch.device
    #: The run's budget in env steps (the schedules follow it).
    total_steps: int
    #: Observations stack this many frames along their first axis (the env's frame stacking;
    #: 1: none), for agents whose replay memory stores each frame once.
    frame_stack: int = 1
    #: Where an image observation's channels are (``first``, ``last``); None: not an image
    #: (:func:`rlexp.envs.boundary.image_channels`).
    channels: str | None = None


class Agent(ABC):
    """Base class of rlexp's agents (see the module docstring for the contract)."""

    #: The agent's config dataclass; registered as the schema of ``conf/agent/<name>.yaml``.
    Config: ClassVar[type[AgentConfig]]
    #: The metric of ``learn`` that ``train.max_abs_q`` bounds; None: no divergence check.
    value_metric: ClassVar[str | None] = "q_mean"

    def __init__(self, spec: AgentSpec):
        self.spec = spec
        self.members = list(spec.members)
        #: The settings every member shares (member 0's config); per-member ones in ``members``.
        self.cfg = self.members[0].cfg
        self.observation_space = spec.observation_space
        self.action_space = spec.action_space
        self.device = spec.device
        self.total_steps = spec.total_steps

    # What the builder and the runner ask of an agent's config before building it.

    @classmethod
    def joins_populations(cls, cfg: AgentConfig, observation_space: spaces.Space,
                          channels: str | None) -> bool:
        """Whether runs of this config can train as the members of one population on envs
        with this observation space (otherwise each trains alone)."""
        return True

    @classmethod
    def memory_settings(cls, cfg: AgentConfig) -> list[str]:
        """The settings that decide how much memory the agent takes, named for a user whose
        machine it does not fit (``agent.buffer_size=...``)."""
        return []

    @classmethod
    def divergence_hints(cls, cfg: AgentConfig) -> list[str]:
        """Likely causes of a diverged run that lie in the agent's own settings."""
        return []

    @property
    def size(self) -> int:
        """The number of members."""
        return len(self.members)

    @abstractmethod
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Actions ``[members, envs]``: exploring if ``explore``, else greedy."""

    @abstractmethod
    def learn(self, batch: Transition, should_stop: Callable[[], bool] | None = None
              ) -> dict[str, torch.Tensor] | None:
        """Learn from one vector-env step; return scalars to log when an update happened."""

    def finish_pending(self) -> dict[str, torch.Tensor] | None:
        """Finish an update that ``should_stop`` cut short (none, for one-step updates)."""
        return None

    @abstractmethod
    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Action values ``[members, batch, n_actions]``."""

    def log_scalars(self) -> dict[str, list[float]]:
        """The agent's state logged at every log point, per member (none by default)."""
        return {}

    @abstractmethod
    def state_dict(self, i: int = 0) -> dict[str, Any]:
        """Everything member ``i`` needs to continue training, as a population of one would
        save it (tensors, numbers, strings, lists, dicts)."""

    @abstractmethod
    def load_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        """Continue every member from what ``state_dict`` returned for it."""
