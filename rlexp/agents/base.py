"""The agent interface the training loop talks to, and the pieces every Q-learning agent shares.

An agent sees the env only through this interface:

- ``act(obs, explore)``: actions for a batch of observations (one per env), epsilon-greedy when
  ``explore`` is true, greedy otherwise.
- ``learn(batch, should_stop)``: called once after every vector-env step with the transitions
  it produced; the agent decides whether to update (and how often). Returns the scalars to log,
  as tensors, when it updated, else ``None``. An agent whose update takes several gradient steps
  asks ``should_stop()`` before each; when it says yes, the agent returns ``None`` at once and
  keeps the rest of the update pending (in its state dict).
- ``finish_pending()``: the rest of an update a stop cut short, when a run resumes, before it
  acts again; returns what ``learn`` would have returned (``None`` when nothing was pending).
- ``q_values(obs)``: the Q-values ``[batch, n_actions]`` for a batch of observations.
- ``state_dict()`` / ``load_state_dict()``: everything needed to continue training.

Agents know nothing of Hydra: they take their own config dataclass (``Agent.Config``) and plain
arguments, so they can be built and tested from Python directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlexp.nets import ACTIVATIONS, KINDS, functional_forward, q_network

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
class NetworkConfig:
    """The Q-network (:mod:`rlexp.nets`): an MLP (with ``hidden=[]`` and ``bias=false`` on a
    discrete env, a Q-table) or a pixel benchmark's convolutional network."""

    #: auto (picked from the observations: nature_cnn for Atari frame stacks, minatar_cnn for
    #: MinAtar's planes, else mlp), mlp, nature_cnn (Mnih et al. 2015) or minatar_cnn (Young &
    #: Tian 2019). The convolutional networks are their papers'; the fields below shape the MLP.
    kind: str = "auto"
    #: MLP hidden layer widths, e.g. [64, 64]; [] is a single linear layer (started at zero).
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    #: Nonlinearity between layers: relu, tanh or elu.
    activation: str = "relu"
    #: Whether the linear layers have a bias.
    bias: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"agent.network.kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"agent.network.hidden={list(self.hidden)}: widths must be positive")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"agent.network.activation={self.activation!r} is not one of "
                f"{', '.join(ACTIVATIONS)}"
            )


@dataclass
class EpsilonConfig:
    """Epsilon-greedy exploration, annealed linearly from ``start`` to ``end``."""

    #: Exploration rate at step 0.
    start: float = 1.0
    #: Exploration rate once annealed, kept until the end.
    end: float = 0.05
    #: Fraction of ``total_steps`` over which epsilon goes from start to end (0: always ``end``).
    fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("start", "end", "fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent.epsilon.{name}={value} must be in [0, 1]")

    def value(self, step: int, total_steps: int) -> float:
        """Epsilon after ``step`` env steps of a ``total_steps`` budget."""
        duration = self.fraction * total_steps
        if step >= duration:
            return self.end
        return self.start + (self.end - self.start) * step / duration


LOSSES = ("mse", "huber")


@dataclass
class AgentConfig:
    """Fields every Q-learning agent has; each agent extends it with its own."""

    #: Which agent this config is for (fixed by the agent's YAML; selects the agent class).
    name: str = ""
    #: Discount factor.
    gamma: float = 0.99
    #: TD loss: mse (0.5 * td**2, so SGD's lr is the tabular step size) or huber (delta 1).
    loss: str = "mse"
    #: Clip the global gradient norm to this value before each step; null: no clipping.
    max_grad_norm: float | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    epsilon: EpsilonConfig = field(default_factory=EpsilonConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"agent.gamma={self.gamma} must be in [0, 1]")
        if self.loss not in LOSSES:
            raise ValueError(f"agent.loss={self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"agent.max_grad_norm={self.max_grad_norm} must be positive or null")


def td_loss(q: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean TD loss: 0.5 * (q - target)**2 (mse) or Huber with delta 1 (equal near 0)."""
    if kind == "huber":
        return nn.functional.huber_loss(q, target)
    return 0.5 * nn.functional.mse_loss(q, target)


class Agent(ABC):
    """Base class of rlexp's agents (see the module docstring for the contract)."""

    #: The agent's config dataclass; registered as the schema of ``conf/agent/<name>.yaml``.
    Config: ClassVar[type[AgentConfig]]

    def __init__(
        self,
        cfg: AgentConfig,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        make_optimizer: OptimizerFactory,
        device: torch.device,
        total_steps: int,
        seed: int,
        frame_stack: int = 1,
    ):
        # frame_stack: observations stack this many frames along their first axis (the env's
        # frame stacking; 1: none), for agents whose replay memory stores each frame once.
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{cfg.name} needs a Discrete action space, got {action_space}")
        self.cfg = cfg
        self.observation_space = observation_space
        self.n_actions = int(action_space.n)
        self.device = device
        self.total_steps = total_steps
        #: Env steps seen by ``learn`` so far (drives the epsilon schedule).
        self.env_steps = 0
        # Exploration draws come from numpy: when every env explores, no forward pass is needed.
        self.rng = np.random.default_rng(seed)
        net = cfg.network
        #: The online Q-network and its optimizer.
        self.q_net = q_network(
            observation_space, self.n_actions, net.hidden, net.activation, net.bias, net.kind
        ).to(device)
        self.optimizer = make_optimizer(self.q_net.parameters())
        self._act_forward = functional_forward(self.q_net)

    @property
    def epsilon(self) -> float:
        return self.cfg.epsilon.value(self.env_steps, self.total_steps)

    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Q-values ``[batch, n_actions]`` for a batch of observations."""
        with torch.inference_mode():
            return self.q_net(torch.as_tensor(obs, device=self.device))

    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Actions for a batch of observations: epsilon-greedy if ``explore``, else greedy."""
        n = len(obs)
        explore_mask = self.rng.random(n) < self.epsilon if explore else None
        if explore_mask is not None and explore_mask.all():  # no forward pass needed
            return self.rng.integers(self.n_actions, size=n)
        with torch.inference_mode():
            q = self._act_forward(torch.as_tensor(obs, device=self.device))
        greedy = q.argmax(dim=1).cpu().numpy()
        if explore_mask is None or not explore_mask.any():
            return greedy
        return np.where(explore_mask, self.rng.integers(self.n_actions, size=n), greedy)

    @abstractmethod
    def learn(self, batch: Transition, should_stop: Callable[[], bool] | None = None
              ) -> dict[str, torch.Tensor] | None:
        """Learn from one vector-env step; return scalars to log when an update happened."""

    def finish_pending(self) -> dict[str, torch.Tensor] | None:
        """Finish an update that ``should_stop`` cut short (none, for one-step updates)."""
        return None

    def _gradient_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_net.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer state and counters; subclasses add what else they need to resume."""
        return {
            "q_net": self.q_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
            "rng": self.rng.bit_generator.state,  # a dict of ints and strings
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.rng.bit_generator.state = state["rng"]
